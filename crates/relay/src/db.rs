//! `relay.db`: opening it, and the one task that writes the queue.
//!
//! Every change the routing makes (frames queued and acked, reports kept, PINs seen) goes
//! through one task that gathers whatever is waiting into one transaction, so a burst of
//! frames costs one commit, not one each. Effects that depend on a write (a QUEUED report,
//! waking a connection to send what was queued) happen only after its commit: a frame is
//! never reported queued before it is on disk.
//!
//! Reads (logins, draining a queue to a connection) use the pool directly; WAL lets them run
//! beside the writer.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bramble_proto::schema::{self, DeliveryStatus};
use bramble_proto::{Address, Frame, Pin, SrpId};
use bytes::Bytes;
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::{mpsc, oneshot};

use crate::RelayError;
use crate::route::{Conn, Shared, lock, report};

/// The database file in the data directory.
pub(crate) const DB_FILE: &str = "relay.db";
/// Connections of a running relay's pool.
pub(crate) const RELAY_POOL_SIZE: u32 = 8;
/// Depth of the database task's channel.
pub(crate) const DB_CHANNEL: usize = 4096;
/// Operations gathered into one transaction at most.
const BATCH: usize = 512;

/// The relay database's migrations, `(version, description, SQL)` oldest first: what
/// `sqlx::migrate!("./migrations")` would embed (same descriptions and checksums), written
/// out because sqlx's procedural macros build both database drivers a second time in every
/// build. A test checks the list against the directory.
const MIGRATIONS: &[(i64, &str, &str)] =
    &[(1, "initial", include_str!("../migrations/0001_initial.sql"))];

/// The migrator of [`MIGRATIONS`].
fn migrator() -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    // as `migrate!` reads it: a first line that opts out of the transaction
                    sql.starts_with("-- no-transaction"),
                )
            })
            .collect(),
    )
}

/// The current time as unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Milliseconds of a duration, saturating.
pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// An address as stored: tag << 32 | value.
pub(crate) fn addr_to_db(a: Address) -> i64 {
    let b = a.to_bytes();
    (i64::from(b[0]) << 32) | i64::from(u32::from_be_bytes([b[1], b[2], b[3], b[4]]))
}

/// An address from its stored form.
pub(crate) fn addr_from_db(v: i64) -> Option<Address> {
    let tag = u8::try_from(v >> 32).ok()?;
    let value = u32::try_from(v & 0xFFFF_FFFF).ok()?;
    let b = value.to_be_bytes();
    Address::from_bytes([tag, b[0], b[1], b[2], b[3]])
}

/// A sequence number as stored (bit for bit).
pub(crate) fn seq_to_db(seq: u64) -> i64 {
    i64::from_ne_bytes(seq.to_ne_bytes())
}

/// A sequence number from its stored form.
pub(crate) fn seq_from_db(v: i64) -> u64 {
    u64::from_ne_bytes(v.to_ne_bytes())
}

/// Creates the data directory (and its parents) when missing; a new one is readable by its
/// owner only, as it holds the TLS key and the relay's database.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// Opens (creating when missing) `relay.db` in `data_dir` and brings its schema up to date.
pub(crate) async fn open(data_dir: &Path, max_connections: u32) -> Result<SqlitePool, RelayError> {
    create_private_dir(data_dir).map_err(|source| RelayError::DataDir {
        path: data_dir.to_owned(),
        source,
    })?;
    let path = data_dir.join(DB_FILE);
    let options = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // A queued frame must survive a crash once it is reported queued.
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(max_connections)
        .connect_with(options)
        .await
        .map_err(|source| RelayError::OpenDb {
            path: path.clone(),
            source,
        })?;
    if let Err(source) = migrator().run(&pool).await {
        pool.close().await;
        return Err(RelayError::Migrate { path, source });
    }
    Ok(pool)
}

/// A change for the database task.
#[derive(Debug)]
pub(crate) enum DbOp {
    /// Queue a sealed frame for its destination.
    Enqueue {
        /// The frame.
        frame: Frame,
        /// The destination's connection, when the frame could not go to it live.
        bypassed: Option<Arc<Conn>>,
    },
    /// Delete queued frames that were acked.
    Delete(Vec<i64>),
    /// Delete pending reports that were sent.
    DeletePending(Vec<i64>),
    /// Keep a report for a server that is not connected (or not keeping up).
    Report {
        /// The server.
        srp: SrpId,
        /// The report.
        report: schema::DeliveryReport,
    },
    /// Record a device login; answers whether the PIN is held by another key.
    DeviceLogin {
        /// The PIN.
        pin: Pin,
        /// Its identity key.
        key: Bytes,
        /// `Ok(true)` when the PIN belongs to another key.
        reply: oneshot::Sender<Result<bool, ()>>,
    },
    /// Drop expired frames and reports.
    Expire,
    /// Commit everything sent before, then stop.
    Stop(oneshot::Sender<()>),
}

/// What one operation came to.
#[derive(Debug)]
enum Outcome {
    Queued,
    Full { frames: i64, bytes: i64 },
    NoSuchSrp,
    Done,
    PinTaken(bool),
    Expired(Vec<(Address, Address, u64)>),
    Failed,
}

#[derive(Debug, Clone, Copy)]
struct Totals {
    frames: i64,
    bytes: i64,
    known: bool,
}

/// The database task: runs until [`DbOp::Stop`].
pub(crate) async fn run(shared: Arc<Shared>, mut rx: mpsc::Receiver<DbOp>) {
    let mut ops: Vec<DbOp> = Vec::with_capacity(BATCH);
    let mut carry: Vec<DbOp> = Vec::new();
    let mut stop: Option<oneshot::Sender<()>> = None;
    loop {
        if carry.is_empty() && stop.is_none() {
            if rx.recv_many(&mut ops, BATCH).await == 0 {
                break;
            }
        } else {
            ops.append(&mut carry);
            while ops.len() < BATCH {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
        }
        if ops.is_empty() {
            break;
        }
        let outcomes = apply(&shared, &ops).await;
        for (op, outcome) in ops.drain(..).zip(outcomes) {
            after_commit(&shared, op, outcome, &mut carry, &mut stop);
        }
        if stop.is_some() && carry.is_empty() && rx.is_empty() {
            break;
        }
    }
    if let Some(tx) = stop {
        let _ = tx.send(());
    }
}

/// Runs `ops` in one transaction; when that fails, each alone, so one bad operation does not
/// lose the others.
async fn apply(shared: &Shared, ops: &[DbOp]) -> Vec<Outcome> {
    match transaction(shared, ops).await {
        Ok(out) => out,
        Err(e) if ops.len() > 1 => {
            tracing::warn!(error = %e, ops = ops.len(), "a relay.db transaction failed; retrying its parts one by one");
            let mut all = Vec::with_capacity(ops.len());
            for op in ops {
                match transaction(shared, std::slice::from_ref(op)).await {
                    Ok(mut out) => all.append(&mut out),
                    Err(e) => {
                        tracing::error!(error = %e, "relay.db refused a change ({}); it is lost", op_name(op));
                        all.push(Outcome::Failed);
                    }
                }
            }
            all
        }
        Err(e) => {
            tracing::error!(error = %e, "relay.db refused a change ({}); it is lost", ops.first().map_or("nothing", op_name));
            ops.iter().map(|_| Outcome::Failed).collect()
        }
    }
}

fn op_name(op: &DbOp) -> &'static str {
    match op {
        DbOp::Enqueue { .. } => "queueing a frame",
        DbOp::Delete(_) => "deleting delivered frames",
        DbOp::DeletePending(_) => "deleting sent reports",
        DbOp::Report { .. } => "keeping a delivery report",
        DbOp::DeviceLogin { .. } => "recording a device login",
        DbOp::Expire => "dropping expired frames",
        DbOp::Stop(_) => "stopping",
    }
}

async fn transaction(shared: &Shared, ops: &[DbOp]) -> Result<Vec<Outcome>, sqlx::Error> {
    let cfg = &shared.cfg;
    let mut tx = shared.pool.begin_with("BEGIN IMMEDIATE").await?;
    let now = now_ms();
    let mut totals: HashMap<i64, Totals> = HashMap::new();
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        let outcome = match op {
            DbOp::Enqueue { frame, .. } => {
                let dst = addr_to_db(frame.header.dst);
                let t = match totals.entry(dst) {
                    Entry::Occupied(o) => o.into_mut(),
                    Entry::Vacant(v) => {
                        let (frames, bytes): (i64, i64) = sqlx::query_as(
                            "SELECT COUNT(*), COALESCE(SUM(len), 0) FROM queue WHERE dst = ?",
                        )
                        .bind(dst)
                        .fetch_one(&mut *tx)
                        .await?;
                        let known = match frame.header.dst {
                            Address::Srp(s) => {
                                sqlx::query_scalar::<_, i64>("SELECT 1 FROM srp WHERE id = ?")
                                    .bind(i64::from(s.get()))
                                    .fetch_optional(&mut *tx)
                                    .await?
                                    .is_some()
                            }
                            _ => true,
                        };
                        v.insert(Totals {
                            frames,
                            bytes,
                            known,
                        })
                    }
                };
                match frame.to_bytes() {
                    Err(_) => Outcome::Failed,
                    Ok(_) if !t.known => Outcome::NoSuchSrp,
                    Ok(wire) => {
                        let len = i64::try_from(wire.len()).unwrap_or(i64::MAX);
                        if t.frames >= i64::from(cfg.queue_max_frames)
                            || t.bytes.saturating_add(len)
                                > i64::try_from(cfg.queue_max_bytes).unwrap_or(i64::MAX)
                        {
                            Outcome::Full {
                                frames: t.frames,
                                bytes: t.bytes,
                            }
                        } else {
                            sqlx::query(
                                "INSERT INTO queue (dst, src, seq, len, frame, enqueued_at, expires_at) \
                                 VALUES (?, ?, ?, ?, ?, ?, ?)",
                            )
                            .bind(dst)
                            .bind(addr_to_db(frame.header.src))
                            .bind(seq_to_db(frame.header.seq))
                            .bind(len)
                            .bind(wire.as_ref())
                            .bind(now)
                            .bind(now.saturating_add(ms(cfg.queue_expiry)))
                            .execute(&mut *tx)
                            .await?;
                            t.frames += 1;
                            t.bytes = t.bytes.saturating_add(len);
                            Outcome::Queued
                        }
                    }
                }
            }
            DbOp::Delete(ids) => {
                for id in ids {
                    sqlx::query("DELETE FROM queue WHERE id = ?")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                Outcome::Done
            }
            DbOp::DeletePending(ids) => {
                for id in ids {
                    sqlx::query("DELETE FROM pending_reports WHERE id = ?")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                Outcome::Done
            }
            DbOp::Report { srp, report } => {
                sqlx::query(
                    "INSERT INTO pending_reports (srp, pin, seq, status, at_ms, detail, expires_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(i64::from(srp.get()))
                .bind(i64::from(report.pin))
                .bind(seq_to_db(report.seq))
                .bind(i64::from(report.status))
                .bind(report.at_ms)
                .bind(&report.detail)
                .bind(now.saturating_add(ms(cfg.queue_expiry)))
                .execute(&mut *tx)
                .await?;
                Outcome::Done
            }
            DbOp::DeviceLogin { pin, key, .. } => {
                sqlx::query(
                    "INSERT INTO pins (pin, identity_key, first_seen, last_seen) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (pin) DO UPDATE SET last_seen = excluded.last_seen \
                     WHERE pins.identity_key = excluded.identity_key",
                )
                .bind(i64::from(pin.0))
                .bind(key.as_ref())
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let stored: Vec<u8> =
                    sqlx::query_scalar("SELECT identity_key FROM pins WHERE pin = ?")
                        .bind(i64::from(pin.0))
                        .fetch_one(&mut *tx)
                        .await?;
                Outcome::PinTaken(stored.as_slice() != key.as_ref())
            }
            DbOp::Expire => {
                let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
                    "DELETE FROM queue WHERE expires_at <= ? RETURNING src, dst, seq",
                )
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM pending_reports WHERE expires_at <= ?")
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                Outcome::Expired(
                    rows.into_iter()
                        .filter_map(|(src, dst, seq)| {
                            Some((addr_from_db(src)?, addr_from_db(dst)?, seq_from_db(seq)))
                        })
                        .collect(),
                )
            }
            DbOp::Stop(_) => Outcome::Done,
        };
        out.push(outcome);
    }
    tx.commit().await?;
    Ok(out)
}

/// What follows from a committed operation: reports, waking connections, answers.
fn after_commit(
    shared: &Shared,
    op: DbOp,
    outcome: Outcome,
    carry: &mut Vec<DbOp>,
    stop: &mut Option<oneshot::Sender<()>>,
) {
    let mut tell = |srp: SrpId, r: schema::DeliveryReport| {
        if let Err(report) = shared.try_report(srp, r) {
            carry.push(DbOp::Report { srp, report });
        }
    };
    let op = match op {
        DbOp::Enqueue { frame, bypassed } => {
            if let Some(conn) = bypassed {
                let mut state = lock(&conn.in_flight);
                state.spooling = state.spooling.saturating_sub(1);
            }
            enqueued(shared, frame, outcome, &mut tell);
            return;
        }
        op => op,
    };
    match (op, outcome) {
        (DbOp::Report { srp, .. }, Outcome::Done) => {
            if let Some(conn) = shared.routes.get(Address::Srp(srp)) {
                conn.kick.notify_one();
            }
        }
        (DbOp::DeviceLogin { reply, .. }, Outcome::PinTaken(taken)) => {
            let _ = reply.send(Ok(taken));
        }
        (DbOp::DeviceLogin { reply, .. }, _) => {
            let _ = reply.send(Err(()));
        }
        (DbOp::Expire, Outcome::Expired(list)) => {
            if !list.is_empty() {
                tracing::info!(
                    frames = list.len(),
                    "dropped frames that waited longer than the queue expiry"
                );
            }
            let expiry = humantime::format_duration(shared.cfg.queue_expiry);
            for (src, dst, seq) in list {
                if let (Address::Srp(srp), Address::Pin(pin)) = (src, dst) {
                    tell(
                        srp,
                        report(
                            pin,
                            seq,
                            DeliveryStatus::Expired,
                            format!(
                                "PIN {pin} did not come into coverage within {expiry}; the frame was dropped"
                            ),
                        ),
                    );
                }
            }
        }
        (DbOp::Stop(tx), _) => {
            *stop = Some(tx);
        }
        _ => {}
    }
}

/// What follows from queueing a frame.
fn enqueued(
    shared: &Shared,
    frame: Frame,
    outcome: Outcome,
    tell: &mut impl FnMut(SrpId, schema::DeliveryReport),
) {
    match outcome {
        Outcome::Queued => {
            let h = frame.header;
            tracing::trace!(src = %h.src, dst = %h.dst, seq = h.seq, "queued on disk");
            if let Some(conn) = shared.routes.get(h.dst) {
                // Live frames wait behind this one until the writer has sent it.
                lock(&conn.in_flight).backlog = true;
                conn.kick.notify_one();
            } else if let (Address::Srp(srp), Address::Pin(pin)) = (h.src, h.dst) {
                tell(
                    srp,
                    report(
                        pin,
                        h.seq,
                        DeliveryStatus::Queued,
                        format!(
                            "PIN {pin} is out of coverage; the frame waits in the relay's queue"
                        ),
                    ),
                );
            }
        }
        Outcome::Full { frames, bytes } => {
            let h = frame.header;
            tracing::warn!(
                src = %h.src, dst = %h.dst, seq = h.seq, frames, bytes,
                "queue full: a frame was dropped"
            );
            if let (Address::Srp(srp), Address::Pin(pin)) = (h.src, h.dst) {
                tell(
                    srp,
                    report(
                        pin,
                        h.seq,
                        DeliveryStatus::QueueFull,
                        format!(
                            "the relay's queue for PIN {pin} already holds {frames} frames \
                             ({bytes} bytes), the most it keeps; the frame was dropped"
                        ),
                    ),
                );
            }
        }
        Outcome::NoSuchSrp => {
            tracing::debug!(
                src = %frame.header.src, dst = %frame.header.dst,
                "dropped a frame for an SRP id that is not registered here"
            );
        }
        _ => {
            tracing::error!(
                src = %frame.header.src, dst = %frame.header.dst, seq = frame.header.seq,
                "a frame could not be queued and is lost"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_migrations_are_the_files() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .expect("the migrations directory")
            .map(|e| {
                e.expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS
            .iter()
            .map(|(v, d, _)| format!("{v:04}_{}.sql", d.replace(' ', "_")))
            .collect();
        assert_eq!(files, listed, "add the new file to MIGRATIONS");
        for ((_, _, sql), file) in MIGRATIONS.iter().zip(&files) {
            let on_disk = std::fs::read_to_string(dir.join(file)).expect("a migration file");
            assert_eq!(*sql, on_disk, "{file}");
        }
        assert_eq!(migrator().iter().count(), 1);
    }

    #[test]
    fn stored_forms_round_trip() {
        for a in [
            Address::Relay,
            Address::Pin(Pin(0xFFFF_FFFF)),
            Address::Pin(Pin(0)),
            Address::Srp(SrpId::new(99_999_999).expect("in range")),
        ] {
            assert_eq!(addr_from_db(addr_to_db(a)), Some(a));
        }
        assert_eq!(addr_from_db(-1), None);
        for s in [0, 1, u64::MAX, 1 << 63] {
            assert_eq!(seq_from_db(seq_to_db(s)), s);
        }
    }
}
