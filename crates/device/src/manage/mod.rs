//! The device's side of the policy service (seed 002, "BlackBerry Policy Service"): what the
//! enterprise server sends after activation besides mail, carried out for real so a test can
//! see it.
//!
//! Owns:
//! - **IT policy updates** (`SignedPolicy`, verified against the domain key pinned at
//!   activation; another domain's policy is refused and the one in force stays) and the
//!   **compliance** of the device with the policy in force ([`policy::compliance`], a pure
//!   function), reported with `PolicyApplied` when a policy arrives and again whenever it
//!   changes (a password set, an application installed);
//! - **the device password and the lock** ([`Device::set_password`], [`Device::lock`],
//!   [`Device::unlock`]): an Argon2id hash, wrong attempts counted durably, the device wiping
//!   itself after the policy's `max_password_attempts`;
//! - **IT admin commands** (`ItCommand`: lock, wipe now or later, remove the organization's
//!   data, regenerate the key), each carried out once per `command_id` and a repeat answered
//!   with the `CommandResult` given;
//! - **service books** sent again after activation;
//! - **software configurations** (`SoftwareConfig`): installed applications (`HOME/apps/`,
//!   packages fetched in order with `AppPackageRequest`, size and SHA-256 checked), removals,
//!   and the `SoftwareReport`;
//! - **the replies still to send** (answers and reports made offline or not yet sent): kept
//!   in the state file and sent by [`send_pending`] (which [`crate::mail::send_pending`]
//!   calls first).
//!
//! Its state is the `manage` section of `state.json` (written atomically, before any answer
//! goes out) and the packages under `HOME/apps/`. Every caller of the mail receive path
//! ([`crate::mail::sync`], [`crate::mail::handle_and_answer`], the CLI's `listen` and the TUI)
//! gets it: [`handle`] takes the envelopes that are the policy service's, and the mail store
//! the rest. What happened is told as [`ManageEvent`]s (in
//! [`MailEvent::Managed`](crate::MailEvent::Managed) and [`crate::mail::SyncReport::managed`]).
//!
//! Every byte from the server is hostile: sizes are bounded (at most [`MAX_PACKAGE`] per
//! package, [`MAX_APPS`] applications per configuration, names and versions of at most
//! [`MAX_NAME`] bytes), nothing panics, and what makes no sense is answered in words.
//!
//! Must not touch: the mail store's tables (it only closes and deletes the store, for a
//! wipe), the relay's or the server's files, the identity key (a wipe keeps it: the PIN
//! stays, like a phone's hardware PIN).

mod apply;
mod commands;
mod password;
pub mod policy;
mod software;
mod state;

use std::fmt;

use bramble_proto::schema::{self, Envelope, envelope::Body};

use crate::mail::MailStore;
use crate::{Connection, Device, DeviceError, Incoming};

pub use commands::{MAX_WIPE_DELAY_HOURS, run_due};
pub use password::MAX_PASSWORD;
pub use software::{AvailableApp, MAX_APPS, MAX_NAME, MAX_PACKAGE};
pub(crate) use state::ManageState;
pub use state::{AppSource, InstalledApp, ScheduledWipe};

/// What the policy service keeps in memory only.
#[derive(Debug, Default)]
pub(crate) struct Runtime {
    /// Counts connections, so a download is asked for again once per connection.
    pub epoch: u64,
    /// The connection on which the package being fetched was last asked for.
    pub requested_epoch: Option<u64>,
    /// The generation of a key just switched to, not yet told.
    pub key_switched: Option<u32>,
    /// Packages of a device without a home, by file name.
    pub memory_packages: std::collections::HashMap<String, Vec<u8>>,
    /// [`Device::open`] carried out a scheduled wipe that had come due.
    pub wiped_at_open: bool,
}

/// Something the policy service did, for the screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManageEvent {
    /// An IT policy was applied.
    PolicyApplied {
        /// Its name.
        name: String,
        /// Its version.
        version: u64,
        /// What keeps the device from complying (empty: it complies).
        problems: Vec<String>,
    },
    /// An IT policy was refused; the one in force stays.
    PolicyRefused {
        /// Why.
        reason: String,
    },
    /// The device's compliance with its IT policy changed (and was reported).
    ComplianceChanged {
        /// What keeps it from complying now (empty: it complies).
        problems: Vec<String>,
    },
    /// Service books were installed again.
    ServiceBooksInstalled {
        /// Their content ids.
        cids: Vec<String>,
    },
    /// The administrator locked the device (and set its password, when `new_password`).
    Locked {
        /// Whether the administrator set a new device password.
        new_password: bool,
    },
    /// The administrator scheduled a wipe.
    WipeScheduled {
        /// When (unix ms).
        due_at_ms: i64,
        /// Whether the phone user may cancel it.
        may_cancel: bool,
    },
    /// The device was wiped: everything on it is gone (the mail store too).
    Wiped,
    /// The organization's data was removed: the device is no longer activated.
    OrganizationRemoved,
    /// A new key was agreed with the server; it is used once the server uses it.
    KeyExchanged {
        /// The generation it will have.
        key_generation: u32,
    },
    /// The device now uses the regenerated key; the old one opens nothing any more.
    KeyRegenerated {
        /// Its generation.
        key_generation: u32,
    },
    /// An IT admin command seen before was answered again with the result given.
    CommandRepeated {
        /// The command.
        command_id: u64,
    },
    /// An IT admin command could not be carried out.
    CommandFailed {
        /// The command.
        command_id: u64,
        /// Why.
        detail: String,
    },
    /// An application package is being downloaded.
    AppDownloading {
        /// Its name.
        name: String,
        /// Its version.
        version: String,
        /// Bytes so far.
        received: u64,
        /// Bytes in all.
        total: u64,
    },
    /// An application was installed.
    AppInstalled {
        /// Its name.
        name: String,
        /// Its version.
        version: String,
    },
    /// An application was removed.
    AppRemoved {
        /// Its name.
        name: String,
        /// Its version.
        version: String,
        /// Why.
        reason: String,
    },
    /// An application could not be installed.
    AppFailed {
        /// Its name.
        name: String,
        /// Its version.
        version: String,
        /// Why.
        detail: String,
    },
    /// A software configuration job is settled and reported.
    SoftwareReported {
        /// The job.
        job_id: u64,
        /// The configuration's name.
        name: String,
    },
    /// Something from the server that made no sense (answered in words).
    Refused {
        /// Why.
        reason: String,
    },
}

impl fmt::Display for ManageEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManageEvent::PolicyApplied {
                name,
                version,
                problems,
            } => {
                write!(f, "IT policy {name} v{version} applied")?;
                if problems.is_empty() {
                    Ok(())
                } else {
                    write!(f, "; not compliant: {}", problems.join(" "))
                }
            }
            ManageEvent::PolicyRefused { reason } => write!(f, "IT policy refused: {reason}"),
            ManageEvent::ComplianceChanged { problems } if problems.is_empty() => {
                f.write_str("The device now complies with its IT policy.")
            }
            ManageEvent::ComplianceChanged { problems } => {
                write!(
                    f,
                    "Not compliant with the IT policy: {}",
                    problems.join(" ")
                )
            }
            ManageEvent::ServiceBooksInstalled { cids } => {
                write!(f, "Service books installed: {}", cids.join(", "))
            }
            ManageEvent::Locked { new_password: true } => {
                f.write_str("Device locked by your administrator, who set a new device password.")
            }
            ManageEvent::Locked {
                new_password: false,
            } => f.write_str("Device locked by your administrator."),
            ManageEvent::WipeScheduled {
                due_at_ms,
                may_cancel,
            } => {
                write!(
                    f,
                    "Wipe scheduled at {} by your administrator",
                    time_text(*due_at_ms)
                )?;
                if *may_cancel {
                    f.write_str(" (`bramble device wipe-cancel` cancels it).")
                } else {
                    f.write_str(".")
                }
            }
            ManageEvent::Wiped => f.write_str(
                "This device was wiped by your administrator: everything on it is gone.",
            ),
            ManageEvent::OrganizationRemoved => f.write_str(
                "Your administrator removed the organization's data: mail, IT policy and the \
                 organization's applications are gone; the device is no longer activated.",
            ),
            ManageEvent::KeyExchanged { key_generation } => write!(
                f,
                "A new encryption key (generation {key_generation}) was agreed with the server."
            ),
            ManageEvent::KeyRegenerated { key_generation } => write!(
                f,
                "The device now uses its new encryption key (generation {key_generation})."
            ),
            ManageEvent::CommandRepeated { command_id } => write!(
                f,
                "Your administrator's command {command_id} arrived again (answered as before)."
            ),
            ManageEvent::CommandFailed { command_id, detail } => {
                write!(
                    f,
                    "Your administrator's command {command_id} failed: {detail}"
                )
            }
            ManageEvent::AppDownloading {
                name,
                version,
                received,
                total,
            } => write!(
                f,
                "Downloading {name} {version}: {received} of {total} bytes"
            ),
            ManageEvent::AppInstalled { name, version } => write!(f, "Installed {name} {version}"),
            ManageEvent::AppRemoved {
                name,
                version,
                reason,
            } => write!(f, "Removed {name} {version}: {reason}"),
            ManageEvent::AppFailed {
                name,
                version,
                detail,
            } => write!(f, "{name} {version} could not be installed: {detail}"),
            ManageEvent::SoftwareReported { name, .. } => {
                write!(f, "Software configuration {name} is in place.")
            }
            ManageEvent::Refused { reason } => {
                write!(f, "A message from the server was refused: {reason}")
            }
        }
    }
}

impl ManageEvent {
    /// Whether the device's data is gone (wiped, or the organization's removed): the mail
    /// store was closed and deleted, and the caller should stop using it.
    pub fn ends_session(&self) -> bool {
        matches!(self, ManageEvent::Wiped | ManageEvent::OrganizationRemoved)
    }
}

/// What handling one envelope leaves to do after the state is written.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// What happened.
    pub events: Vec<ManageEvent>,
    /// Envelopes to send now, not kept (a package request, a key confirmation).
    pub direct: Vec<Envelope>,
    /// What to do once the answer is sent.
    pub then: Option<Then>,
}

/// The last step of a command that deletes data: carried out after its answer is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Then {
    /// Wipe the device.
    Wipe,
    /// Remove the organization's data.
    RemoveOrganization,
}

pub(crate) fn envelope(body: Body) -> Envelope {
    Envelope {
        version: u32::from(bramble_proto::PROTOCOL_VERSION),
        body: Some(body),
    }
}

/// The current time, unix ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A unix-ms time as `YYYY-MM-DD HH:MM UTC`.
pub fn time_text(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// Whether an envelope is the policy service's to handle on this device.
fn is_ours(body: &Body) -> bool {
    matches!(
        body,
        Body::ItPolicy(_)
            | Body::ServiceBooks(_)
            | Body::ItCommand(_)
            | Body::SoftwareConfig(_)
            | Body::AppPackageChunk(_)
            | Body::KeyConfirmation(_)
            | Body::CommandResult(_)
            | Body::AppPackageRequest(_)
            | Body::SoftwareReport(_)
            | Body::PolicyApplied(_)
            | Body::ServiceBooksReceived(_)
    )
}

/// Handles what [`Connection::recv`] returned when it is the policy service's (an IT policy,
/// service books, an IT admin command, a software configuration or a package piece, a key
/// confirmation) and sends the answers; `None` when it is not (mail, Ping, a rejected frame).
///
/// A wipe due by now is carried out first (see [`run_due`]). State is written before any
/// answer is sent; answers the server must get are kept until sent ([`send_pending`]).
/// After a wipe or a removal of the organization's data the mail store is closed (and its
/// file deleted): the events say so ([`ManageEvent::ends_session`]).
///
/// # Errors
/// When the state or a package cannot be written, or the connection fails.
pub async fn handle(
    conn: &mut Connection<'_>,
    store: &MailStore,
    item: &Incoming,
) -> Result<Option<Vec<ManageEvent>>, DeviceError> {
    let Incoming::Envelope { seq, env } = item else {
        return Ok(None);
    };
    let Some(body) = env.body.as_ref().filter(|b| is_ours(b)) else {
        return Ok(None);
    };
    if let Some(events) = run_due(conn, store, now_ms()).await? {
        return Ok(Some(events));
    }
    let mut out = Outcome::default();
    if let Some(key_generation) = conn.device_mut().runtime.key_switched.take() {
        out.events
            .push(ManageEvent::KeyRegenerated { key_generation });
    }
    let dev = conn.device_mut();
    match body {
        Body::ItPolicy(signed) => dev.policy_update(signed, &mut out)?,
        Body::ServiceBooks(books) => dev.service_books_again(*seq, books, &mut out)?,
        Body::ItCommand(cmd) => dev.it_command(cmd, &mut out)?,
        Body::SoftwareConfig(cfg) => dev.software_config(cfg, &mut out)?,
        Body::AppPackageChunk(chunk) => dev.package_chunk(chunk, &mut out)?,
        Body::KeyConfirmation(_) => {
            // "I hold the key", answered with the device's own (after a key regeneration,
            // the server's first frame under the new key).
            let key_generation = dev.status().key_generation;
            out.direct
                .push(envelope(Body::KeyConfirmation(schema::KeyConfirmation {
                    key_generation,
                })));
        }
        _ => {
            let reason = "a message meant for the server was sent to the device".to_owned();
            out.direct.push(envelope(Body::Error(schema::ErrorReport {
                code: schema::ErrorCode::BadRequest.into(),
                message: format!("The device could not use a policy message: {reason}"),
                about_seq: *seq,
            })));
            out.events.push(ManageEvent::Refused { reason });
        }
    }
    finish(conn, store, out).await.map(Some)
}

/// Sends what handling left to send, then carries out the last step of a wipe or removal.
pub(crate) async fn finish(
    conn: &mut Connection<'_>,
    store: &MailStore,
    mut out: Outcome,
) -> Result<Vec<ManageEvent>, DeviceError> {
    match out.then {
        None => {
            send_pending(conn).await?;
            for env in &out.direct {
                conn.send(env).await?;
            }
        }
        Some(then) => {
            // The answer goes first; the data goes whether or not it could be sent (the
            // device must not keep what it was told to delete because coverage dropped).
            for env in &out.direct {
                if let Err(e) = conn.send(env).await {
                    tracing::warn!(error = %e, "the answer to a wipe could not be sent");
                    break;
                }
            }
            store.close().await;
            let dev = conn.device_mut();
            match then {
                Then::Wipe => {
                    dev.factory_reset()?;
                    out.events.push(ManageEvent::Wiped);
                }
                Then::RemoveOrganization => {
                    dev.remove_organization_data()?;
                    out.events.push(ManageEvent::OrganizationRemoved);
                }
            }
        }
    }
    Ok(out.events)
}

/// Sends the replies that wait on the device (answers to IT admin commands, compliance and
/// software reports made while offline or not yet sent), each dropped once sent, and asks
/// again for the package being fetched when this connection has not asked yet.
///
/// # Errors
/// A connection failure (what was not sent stays queued), or when the state cannot be
/// written.
pub async fn send_pending(conn: &mut Connection<'_>) -> Result<usize, DeviceError> {
    if conn.device().server().is_none() {
        return Ok(0);
    }
    let queued = conn.device().manage().outbox.clone();
    let mut sent = 0;
    let mut failure = None;
    for hex_env in &queued {
        let env = hex::decode(hex_env)
            .ok()
            .and_then(|b| prost::Message::decode(b.as_slice()).ok());
        if let Some(env) = env {
            let env: Envelope = env;
            if let Err(e) = conn.send(&env).await {
                failure = Some(e);
                break;
            }
        }
        sent += 1;
    }
    if sent > 0 {
        conn.device_mut().update_manage(|m| {
            let n = sent.min(m.outbox.len());
            m.outbox.drain(..n);
        })?;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    if let Some(request) = conn.device_mut().package_request_for_this_connection() {
        conn.send(&request).await?;
    }
    Ok(sent)
}

impl Device {
    /// How many answers and reports wait to be sent to the server ([`send_pending`]).
    pub fn pending_replies(&self) -> usize {
        self.manage().outbox.len()
    }

    /// Whether [`Device::open`] found a scheduled wipe come due and carried it out (the
    /// device is factory-fresh; the server was not told, as nothing could be sent).
    pub fn wiped_when_opened(&self) -> bool {
        self.runtime.wiped_at_open
    }
}
