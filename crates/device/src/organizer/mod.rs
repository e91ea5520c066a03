//! The handheld's side of the synchronization service (seed 002, "BlackBerry Synchronization
//! Service"; `docs/protocol.md` §8.3): the device's organizer databases (calendar, contacts,
//! tasks, memos) kept in step with the organization's CalDAV/CardDAV server, and wireless
//! backup of the phone user's options.
//!
//! Owns:
//! - **the organizer store** ([`OrganizerStore`]): `HOME/organizer.db` (SQLite, WAL,
//!   `synchronous = FULL`, mode 0600), or one in-memory database for an in-memory device: per
//!   record its text (a vCard or an iCalendar object, read with `bramble-organizer`, never
//!   parsed here), the server's version last got, where it stands ([`RecordState`]), the
//!   server's refusal; the last synchronization configuration; the outgoing batches not yet
//!   answered (sent again on every connection until they are, each with a batch id never
//!   reused);
//! - **the reactions to what arrives** ([`handle`], called from the mail receive path like
//!   [`crate::manage::handle`]): the server's batches (stored by UID; no deletion during the
//!   slow synchronization; an unsent change on the device is kept, and the server's version
//!   not taken, so the server sees the conflict when the change arrives), answered record by
//!   record (a record that does not parse is REJECTED in words, the rest stored); the
//!   outcomes of the device's own batches; the configuration; the end of the slow
//!   synchronization; a backup to restore;
//! - **the phone user's options** ([`Device::options`], [`Device::set_option`]): a small
//!   key → value map in `state.json`, backed up (`DeviceBackup`) whenever it changes and
//!   after activation when the configuration says so, and restored from `BackupRestore`.
//!
//! What happened is told as [`OrganizerEvent`]s (in
//! [`MailEvent::Organizer`](crate::MailEvent::Organizer) and
//! [`crate::mail::SyncReport::organizer`]). The slow synchronization itself is driven by
//! activation ([`crate::activation`]).
//!
//! Must not touch: the mail store, the policy service's state (`manage`), the relay's or the
//! server's files.

mod options;
mod store;

use std::fmt;

use bramble_organizer::Database;
use bramble_proto::schema::{
    self, Envelope, OrganizerBatch, OrganizerBatchResult, RecordOutcome, RecordState as Outcome,
    envelope::Body,
};

use crate::{Connection, Device, DeviceError, Incoming};

pub(crate) use options::OptionsState;
pub use options::{MAX_OPTION_KEY, MAX_OPTION_VALUE, MAX_OPTIONS};
pub use store::{
    DatabaseConfig, Direction, MAX_BATCH_BYTES, MAX_BATCH_RECORDS, ORGANIZER_DB, OrganizerEntry,
    OrganizerStore, RecordState, SyncConfig,
};

use store::Taken;

/// Something the synchronization service did, for the screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrganizerEvent {
    /// The synchronization configuration arrived (and is kept).
    Configured(SyncConfig),
    /// Records from the server were taken into a database.
    FromServer {
        /// The database.
        database: Database,
        /// Records new on the device.
        new: usize,
        /// Records replaced.
        changed: usize,
        /// Records deleted.
        deleted: usize,
        /// Records the device kept its own unsent change of.
        kept: usize,
    },
    /// A record from the server could not be taken (the server was told why).
    ServerRecordRefused {
        /// The database.
        database: Database,
        /// Its UID.
        uid: String,
        /// Why.
        detail: String,
    },
    /// The server took changes made on the device.
    ChangesTaken {
        /// The database.
        database: Database,
        /// How many.
        count: usize,
    },
    /// A change made on the device lost a conflict: the server's copy replaced it.
    ConflictLost {
        /// The database.
        database: Database,
        /// The record's title, as the device had it.
        title: String,
    },
    /// The server refused a change made on the device; it stays on the device, marked.
    ChangeRefused {
        /// The database.
        database: Database,
        /// The record's title.
        title: String,
        /// Why.
        detail: String,
    },
    /// The slow synchronization is complete.
    SlowSyncDone {
        /// Per database: records sent by the device and taken, records the server sent,
        /// records refused.
        counts: Vec<(Database, u32, u32, u32)>,
    },
    /// The options were restored from a backup of another device.
    Restored {
        /// The PIN of the device the backup was taken from.
        from_pin: String,
        /// Options taken from it.
        options: usize,
    },
    /// A backup could not be restored.
    RestoreFailed {
        /// Why.
        reason: String,
    },
    /// Something from the server that made no sense (answered in words).
    Refused {
        /// Why.
        reason: String,
    },
}

fn the(database: Database, title: &str) -> String {
    if title.trim().is_empty() {
        format!("an untitled {}", database.noun())
    } else {
        format!("the {} \u{201c}{title}\u{201d}", database.noun())
    }
}

impl fmt::Display for OrganizerEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrganizerEvent::Configured(c) if !c.enabled => {
                f.write_str("Wireless synchronization is off for this device.")?;
                if c.backup {
                    f.write_str(" Wireless backup is on.")?;
                }
                Ok(())
            }
            OrganizerEvent::Configured(c) => {
                let dbs: Vec<String> = c
                    .databases
                    .iter()
                    .filter(|d| d.enabled)
                    .map(|d| match d.direction {
                        Direction::Bidirectional => d.database.title().to_owned(),
                        Direction::ServerToDevice => {
                            format!("{} (from the server only)", d.database.title())
                        }
                    })
                    .collect();
                if dbs.is_empty() {
                    f.write_str("Wireless synchronization is on, for no database.")?;
                } else {
                    write!(f, "Wireless synchronization is on: {}.", dbs.join(", "))?;
                }
                if c.backup {
                    f.write_str(" Wireless backup is on.")?;
                }
                Ok(())
            }
            OrganizerEvent::FromServer {
                database,
                new,
                changed,
                deleted,
                kept,
            } => {
                let mut parts = Vec::new();
                if *new > 0 {
                    parts.push(format!("{new} new"));
                }
                if *changed > 0 {
                    parts.push(format!("{changed} changed"));
                }
                if *deleted > 0 {
                    parts.push(format!("{deleted} deleted"));
                }
                if parts.is_empty() {
                    write!(f, "{}: nothing new from the server", database.title())?;
                } else {
                    write!(
                        f,
                        "{}: {} from the server",
                        database.title(),
                        parts.join(", ")
                    )?;
                }
                if *kept > 0 {
                    write!(
                        f,
                        " ({kept} kept as changed on this device: your change goes to the server)"
                    )?;
                }
                Ok(())
            }
            OrganizerEvent::ServerRecordRefused {
                database,
                uid,
                detail,
            } => write!(
                f,
                "{}: a {} from the server could not be taken ({uid}): {detail}",
                database.title(),
                database.noun()
            ),
            OrganizerEvent::ChangesTaken { database, count } => write!(
                f,
                "{}: {count} change{} taken by the server",
                database.title(),
                if *count == 1 { "" } else { "s" }
            ),
            OrganizerEvent::ConflictLost { database, title } => write!(
                f,
                "Your change to {} was not kept: it was changed on the server too, and the \
                 server's copy replaces yours.",
                the(*database, title)
            ),
            OrganizerEvent::ChangeRefused {
                database,
                title,
                detail,
            } => write!(
                f,
                "Your change to {} was refused by the server: {detail}. It stays on this device.",
                the(*database, title)
            ),
            OrganizerEvent::SlowSyncDone { counts } => {
                f.write_str("Slow synchronization complete")?;
                let parts: Vec<String> = counts
                    .iter()
                    .map(|(db, from, to, rejected)| {
                        let mut s = format!("{}: {from} sent, {to} received", db.title());
                        if *rejected > 0 {
                            s.push_str(&format!(", {rejected} refused"));
                        }
                        s
                    })
                    .collect();
                if parts.is_empty() {
                    f.write_str(".")
                } else {
                    write!(f, " ({}).", parts.join("; "))
                }
            }
            OrganizerEvent::Restored { from_pin, options } => write!(
                f,
                "Your options were restored from the backup of device {from_pin} ({options} \
                 option{}).",
                if *options == 1 { "" } else { "s" }
            ),
            OrganizerEvent::RestoreFailed { reason } => {
                write!(f, "The backup could not be restored: {reason}")
            }
            OrganizerEvent::Refused { reason } => {
                write!(f, "A synchronization message was refused: {reason}")
            }
        }
    }
}

pub(crate) fn envelope(body: Body) -> Envelope {
    Envelope {
        version: u32::from(bramble_proto::PROTOCOL_VERSION),
        body: Some(body),
    }
}

impl Device {
    /// The device's organizer store: `HOME/organizer.db`, created on first use and kept open
    /// while the device is (in memory for an in-memory device: one store for its life).
    ///
    /// # Errors
    /// [`DeviceError::OrganizerStoreDamaged`] or [`DeviceError::OrganizerStore`].
    pub async fn organizer(&self) -> Result<OrganizerStore, DeviceError> {
        self.organizer
            .get_or_try_init(|| OrganizerStore::open(self.home()))
            .await
            .cloned()
    }

    /// Forgets the open organizer store (its files are about to go).
    pub(crate) fn drop_organizer(&mut self) {
        self.organizer = tokio::sync::OnceCell::new();
    }
}

/// Whether an envelope is the synchronization service's.
fn is_ours(body: &Body) -> bool {
    matches!(
        body,
        Body::SyncConfiguration(_)
            | Body::OrganizerBatch(_)
            | Body::OrganizerBatchResult(_)
            | Body::SlowSyncDone(_)
            | Body::BackupRestore(_)
            | Body::SyncConfigRequest(_)
            | Body::SlowSyncStart(_)
            | Body::DeviceBackup(_)
    )
}

/// Handles what [`Connection::recv`] returned when it is the synchronization service's and
/// sends the answers; `None` when it is not. Everything is stored before anything is
/// answered.
///
/// # Errors
/// When the store cannot be written (nothing is answered then), or the connection fails.
pub async fn handle(
    conn: &mut Connection<'_>,
    item: &Incoming,
) -> Result<Option<Vec<OrganizerEvent>>, DeviceError> {
    let Incoming::Envelope { seq, env } = item else {
        return Ok(None);
    };
    let Some(body) = env.body.as_ref().filter(|b| is_ours(b)) else {
        return Ok(None);
    };
    let store = conn.device().organizer().await?;
    let (events, replies) = handle_body(conn.device_mut(), &store, *seq, body).await?;
    for reply in &replies {
        conn.send(reply).await?;
    }
    send_backup(conn).await?;
    Ok(Some(events))
}

/// Handles one of the service's envelopes: what happened, and what to send back.
pub(crate) async fn handle_body(
    dev: &mut Device,
    store: &OrganizerStore,
    seq: u64,
    body: &Body,
) -> Result<(Vec<OrganizerEvent>, Vec<Envelope>), DeviceError> {
    let mut events = Vec::new();
    let mut replies = Vec::new();
    match body {
        Body::SyncConfiguration(c) => {
            store.set_sync_configuration(c).await?;
            dev.set_backup_enabled(c.backup)?;
            events.push(OrganizerEvent::Configured(SyncConfig::from_proto(c)));
        }
        Body::OrganizerBatch(b) => {
            let result = server_batch(store, b, &mut events).await?;
            replies.push(envelope(Body::OrganizerBatchResult(result)));
        }
        Body::OrganizerBatchResult(r) => batch_result(store, r, &mut events).await?,
        Body::SlowSyncDone(d) => events.push(OrganizerEvent::SlowSyncDone {
            counts: d
                .counts
                .iter()
                .filter_map(|c| {
                    Some((
                        Database::from_proto(c.database)?,
                        c.from_device,
                        c.to_device,
                        c.rejected,
                    ))
                })
                .collect(),
        }),
        Body::BackupRestore(r) => match dev.restore_options(&r.settings) {
            Ok(options) => events.push(OrganizerEvent::Restored {
                from_pin: r.from_pin.clone(),
                options,
            }),
            Err(reason) => {
                replies.push(bad_request(seq, &reason));
                events.push(OrganizerEvent::RestoreFailed { reason });
            }
        },
        _ => {
            let reason = "a message meant for the server was sent to the device".to_owned();
            replies.push(bad_request(seq, &reason));
            events.push(OrganizerEvent::Refused { reason });
        }
    }
    Ok((events, replies))
}

fn bad_request(seq: u64, reason: &str) -> Envelope {
    envelope(Body::Error(schema::ErrorReport {
        code: schema::ErrorCode::BadRequest.into(),
        message: format!("The device could not use a synchronization message: {reason}"),
        about_seq: seq,
    }))
}

fn outcome(uid: &str, state: Outcome, version: &str, detail: String) -> RecordOutcome {
    RecordOutcome {
        uid: uid.to_owned(),
        state: state.into(),
        version: version.to_owned(),
        detail,
        server_record: None,
    }
}

/// The most a UID may be before it is not even stored as a refusal's name.
const MAX_UID: usize = 255;

/// Takes a batch from the server, record by record; never stops at one that is wrong.
async fn server_batch(
    store: &OrganizerStore,
    b: &OrganizerBatch,
    events: &mut Vec<OrganizerEvent>,
) -> Result<OrganizerBatchResult, DeviceError> {
    let mut result = OrganizerBatchResult {
        database: b.database,
        batch_id: b.batch_id,
        outcomes: Vec::with_capacity(b.records.len()),
    };
    let Some(db) = Database::from_proto(b.database) else {
        let reason = format!("database {} is not one this device knows", b.database);
        for r in &b.records {
            result
                .outcomes
                .push(outcome(&r.uid, Outcome::RecordRejected, "", reason.clone()));
        }
        events.push(OrganizerEvent::Refused { reason });
        return Ok(result);
    };
    let (mut new, mut changed, mut deleted, mut kept) = (0, 0, 0, 0);
    for r in &b.records {
        let uid: String = r.uid.chars().take(MAX_UID).collect();
        let taken = if r.uid.trim().is_empty() {
            Err(DeviceError::RecordRefused("it has no UID".into()))
        } else {
            store.take_server(db, r, b.slow, false).await
        };
        match taken {
            Ok(t) => {
                let detail = match t {
                    Taken::New => {
                        new += 1;
                        String::new()
                    }
                    Taken::Changed => {
                        changed += 1;
                        String::new()
                    }
                    Taken::Deleted => {
                        deleted += 1;
                        String::new()
                    }
                    Taken::Nothing => String::new(),
                    Taken::KeptDevices => {
                        kept += 1;
                        "the device holds a change of its own to this record, on its way to the \
                         server"
                            .to_owned()
                    }
                };
                result
                    .outcomes
                    .push(outcome(&uid, Outcome::RecordStored, &r.version, detail));
            }
            Err(DeviceError::RecordRefused(detail)) => {
                tracing::warn!(%db, uid, %detail, "a record from the server was refused");
                result
                    .outcomes
                    .push(outcome(&uid, Outcome::RecordRejected, "", detail.clone()));
                events.push(OrganizerEvent::ServerRecordRefused {
                    database: db,
                    uid,
                    detail,
                });
            }
            Err(e) => return Err(e),
        }
    }
    if new + changed + deleted + kept > 0 || b.records.is_empty() && b.last {
        events.push(OrganizerEvent::FromServer {
            database: db,
            new,
            changed,
            deleted,
            kept,
        });
    }
    Ok(result)
}

/// The server's answer to one of the device's batches.
async fn batch_result(
    store: &OrganizerStore,
    r: &OrganizerBatchResult,
    events: &mut Vec<OrganizerEvent>,
) -> Result<(), DeviceError> {
    let Some(db) = Database::from_proto(r.database) else {
        return Ok(());
    };
    // A repeat of an answer already taken changes nothing.
    if !store.batch_waiting(r.batch_id).await? {
        tracing::debug!(batch = r.batch_id, "an answer to a batch already answered");
        return Ok(());
    }
    let mut taken = 0;
    for o in &r.outcomes {
        match Outcome::try_from(o.state).unwrap_or(Outcome::RecordUnspecified) {
            Outcome::RecordStored => {
                if store
                    .stored(db, &o.uid, r.batch_id, &o.version)
                    .await?
                    .is_some()
                {
                    taken += 1;
                }
            }
            Outcome::RecordConflictLost => {
                let title = store
                    .held(db, &o.uid)
                    .await?
                    .map(|h| h.entry.summary.title)
                    .unwrap_or_default();
                match &o.server_record {
                    Some(server) => {
                        let mut server = server.clone();
                        if server.uid.is_empty() {
                            server.uid.clone_from(&o.uid);
                        }
                        if server.version.is_empty() {
                            server.version.clone_from(&o.version);
                        }
                        match store.take_server(db, &server, false, true).await {
                            Ok(_) => {}
                            Err(DeviceError::RecordRefused(detail)) => {
                                store.refused(db, &o.uid, &detail).await?;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    // The server's copy won without being sent: it comes in a batch of its own.
                    None => {
                        store.stored(db, &o.uid, r.batch_id, &o.version).await?;
                    }
                }
                events.push(OrganizerEvent::ConflictLost {
                    database: db,
                    title,
                });
            }
            Outcome::RecordRejected => {
                if let Some(e) = store.refused(db, &o.uid, &o.detail).await? {
                    events.push(OrganizerEvent::ChangeRefused {
                        database: db,
                        title: e.summary.title,
                        detail: o.detail.clone(),
                    });
                }
            }
            Outcome::RecordUnspecified => {}
        }
    }
    store.batch_answered(r.batch_id).await?;
    if taken > 0 {
        events.push(OrganizerEvent::ChangesTaken {
            database: db,
            count: taken,
        });
    }
    Ok(())
}

/// Sends what the synchronization service has waiting: the changes made on the device to
/// the databases synchronized both ways (new batches made of them), every batch not yet
/// answered (again), and the backup when one is due. Returns how many envelopes went.
///
/// # Errors
/// A connection failure (what was not answered is sent again next time), or a store failure.
pub async fn send_pending(conn: &mut Connection<'_>) -> Result<usize, DeviceError> {
    if conn.device().server().is_none() {
        return Ok(0);
    }
    let store = conn.device().organizer().await?;
    if let Some(config) = store.sync_config().await? {
        store.queue_changes(&config.sent()).await?;
    }
    let mut sent = 0;
    for batch in store.pending_batches().await? {
        conn.send(&envelope(Body::OrganizerBatch(batch))).await?;
        sent += 1;
    }
    sent += send_backup(conn).await?;
    Ok(sent)
}

/// Sends the backup of the options when one is due (wireless backup on, and the options
/// changed since the last one went).
pub(crate) async fn send_backup(conn: &mut Connection<'_>) -> Result<usize, DeviceError> {
    let Some(backup) = conn.device().due_backup() else {
        return Ok(0);
    };
    conn.send(&envelope(Body::DeviceBackup(backup))).await?;
    conn.device_mut().backup_sent()?;
    Ok(1)
}

/// The first steps of the slow synchronization during an activation: `SlowSyncStart`, then
/// every record of each database synchronized both ways, in the configuration's order
/// (after dropping the device's records when `overwrite`).
pub(crate) async fn start_slow_sync(
    conn: &mut Connection<'_>,
    store: &OrganizerStore,
    overwrite: bool,
    mut progress: impl FnMut(Database, usize),
) -> Result<(), DeviceError> {
    let Some(config) = store.sync_config().await? else {
        return Ok(());
    };
    if overwrite {
        store.clear().await?;
    }
    conn.send(&envelope(Body::SlowSyncStart(schema::SlowSyncStart {
        overwrite_device: overwrite,
    })))
    .await?;
    if overwrite {
        return Ok(());
    }
    for db in config.sent() {
        let batches = store.slow_batches(db).await?;
        let records = batches.iter().map(|b| b.records.len()).sum();
        progress(db, records);
        for b in batches {
            conn.send(&envelope(Body::OrganizerBatch(b))).await?;
        }
    }
    Ok(())
}
