//! The synchronization service's task, and one worker task per user with organizer data in
//! motion (so one user's slow CalDAV server never holds up another's).
//!
//! - **Configuration** (activation step 13/14): a device's `SyncConfigRequest` is answered with
//!   its user's [`super::settings::resolve`]d configuration, and it is sent again when an
//!   administrator changes it.
//! - **Slow synchronization** (`SlowSyncStart`): database by database in the configuration's
//!   order (calendar first), the server lists everything on the CalDAV/CardDAV server, takes
//!   the device's records of a bidirectional database (merging by UID: equal records are
//!   matched, different ones settled by the conflict rule, new ones created; nothing is
//!   deleted), then sends the device every record it does not hold. Then `SlowSyncDone`, the
//!   restore of the user's previous device's backup, and, when this was an activation,
//!   `ActivationComplete` with the status **Completed**.
//! - **Incremental synchronization**: a device's change is written to the CalDAV/CardDAV
//!   server at once (with the etag it started from, so a change made there meanwhile is a
//!   conflict, settled by the rule); every `interval` each user's collections are asked what
//!   changed since their sync token (RFC 6578), and what changed is sent to the device. A
//!   batch the device did not answer is sent again after `retry_after`.
//! - **Hostile data**: a resource that is not a valid record is reported (`sync_problems`)
//!   and left out; one the device sends is answered REJECTED with the reason; the rest go on.
//! - **Wireless backup**: a device's `DeviceBackup` is kept, encrypted (AES-256-GCM under a key
//!   among the server's secrets, the user's address as associated data).
//!
//! Owns: the workers and their in-memory state (batches in flight, the slow sync under way:
//! a restart mid-way loses it, and the device asks again). Must not touch: sealing, mailboxes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bramble_organizer::{Database, parse};
use bramble_proto::Pin;
use bramble_proto::schema::{self, Envelope, RecordState, envelope::Body};
use bramble_store::{Store, StoreError, SyncRecordRow, UserStatus, now_ms};
use tokio::sync::{broadcast, mpsc};

use super::SyncConfig;
use super::dav::{DavAccount, DavClient, DavError, DeleteOutcome, Fetched, PutOutcome};
use super::settings::{self, Conflict, Direction, Resolved};
use crate::ServerEvent;
use crate::dispatcher::Dispatcher;
use crate::messaging::mailbox::PasswordLookup;
use crate::secret_box::SecretBox;

/// The name of the backup key among the server's secrets.
pub const BACKUP_KEY: &str = "sync_backup_key";
const BACKUP_AAD: &[u8] = b"bramble/v1/device-backup/";
/// The largest backup taken.
const MAX_BACKUP: usize = 256 * 1024;
/// At most this many records, and this many bytes of records, in one batch to a device.
const BATCH_RECORDS: usize = 100;
const BATCH_BYTES: usize = 512 * 1024;

/// What the service is told.
#[derive(Debug)]
pub enum Input {
    /// A device's message: SyncConfigRequest, SlowSyncStart, OrganizerBatch,
    /// OrganizerBatchResult, DeviceBackup.
    Device(Pin, Envelope),
    /// An administrator changed a user's settings (`None`: a group's, so anyone's).
    SettingsChanged(Option<String>),
}

/// How other components reach the service. Never waits: when the service is overloaded the
/// message is dropped with a warning (the device sends again what is not answered).
#[derive(Debug, Clone)]
pub struct SyncHandle {
    tx: mpsc::Sender<Input>,
}

impl SyncHandle {
    /// Whether the service's task still runs (it holds the other end of the channel).
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// A handle and the receiver to give [`SyncService::run`].
    pub fn channel() -> (SyncHandle, mpsc::Receiver<Input>) {
        let (tx, rx) = mpsc::channel(4096);
        (SyncHandle { tx }, rx)
    }

    fn give(&self, input: Input) {
        if let Err(e) = self.tx.try_send(input) {
            tracing::warn!("the synchronization service is overloaded; a message was dropped: {e}");
        }
    }

    /// A device's message.
    pub fn device(&self, pin: Pin, env: Envelope) {
        self.give(Input::Device(pin, env));
    }

    /// A user's settings changed (`None`: a group's).
    pub fn settings_changed(&self, email: Option<&str>) {
        self.give(Input::SettingsChanged(email.map(str::to_owned)));
    }
}

/// What a worker shares with the others.
struct Ctx {
    store: Store,
    dispatcher: Dispatcher,
    cfg: SyncConfig,
    passwords: Option<PasswordLookup>,
    backup_key: SecretBox,
    events: broadcast::Sender<ServerEvent>,
}

/// The service's task.
pub struct SyncService {
    ctx: Arc<Ctx>,
    workers: HashMap<String, WorkerHandle>,
}

/// A worker's channel, and whether a poll is already waiting in it (polls are never queued
/// twice: a user whose poll takes longer than the interval would otherwise see answers from
/// the device wait behind a pile of polls).
struct WorkerHandle {
    tx: mpsc::Sender<Work>,
    poll_queued: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for SyncService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncService")
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

/// What a worker is given.
#[derive(Debug)]
enum Work {
    Device(Pin, Envelope),
    Poll(Pin),
    SettingsChanged(Pin),
}

impl SyncService {
    /// The service, with its backup key (made on first start).
    ///
    /// # Errors
    /// When the database fails or the stored key is damaged.
    pub async fn new(
        store: Store,
        dispatcher: Dispatcher,
        cfg: SyncConfig,
        passwords: Option<PasswordLookup>,
        events: broadcast::Sender<ServerEvent>,
    ) -> Result<SyncService, StoreError> {
        let backup_key = SecretBox::load(&store, BACKUP_KEY, "the wireless backup key").await?;
        Ok(SyncService {
            ctx: Arc::new(Ctx {
                store,
                dispatcher,
                cfg,
                passwords,
                backup_key,
                events,
            }),
            workers: HashMap::new(),
        })
    }

    /// Runs until every handle is dropped.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        let mut tick = tokio::time::interval(self.ctx.cfg.interval.max(Duration::from_millis(200)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                input = rx.recv() => match input {
                    Some(Input::Device(pin, env)) => self.route(pin, Work::Device(pin, env)).await,
                    Some(Input::SettingsChanged(who)) => self.settings_changed(who).await,
                    None => return,
                },
                _ = tick.tick() => self.poll_all().await,
            }
        }
    }

    async fn route(&mut self, pin: Pin, work: Work) {
        let email = match self.ctx.store.device_by_pin(pin.0).await {
            Ok(Some(d)) => d.email,
            Ok(None) => {
                tracing::debug!(%pin, "organizer data from a device that is not activated here; ignored");
                return;
            }
            Err(e) => {
                tracing::warn!(%pin, "cannot look the device up: {e}");
                return;
            }
        };
        self.give_worker(&email, work);
    }

    fn give_worker(&mut self, email: &str, work: Work) {
        use std::sync::atomic::Ordering;
        let handle = self.workers.entry(email.to_owned()).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(1024);
            let poll_queued = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let worker = Worker::new(email.to_owned(), self.ctx.clone(), poll_queued.clone());
            tokio::spawn(worker.run(rx));
            WorkerHandle { tx, poll_queued }
        });
        if matches!(work, Work::Poll(_)) && handle.poll_queued.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Err(e) = handle.tx.try_send(work) {
            tracing::warn!(user = %email, "the synchronization worker is overloaded; dropped: {e}");
        }
    }

    async fn settings_changed(&mut self, who: Option<String>) {
        let devices = match self.ctx.store.list_devices().await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("cannot list devices: {e}");
                return;
            }
        };
        for d in devices {
            if who
                .as_deref()
                .is_none_or(|w| w.eq_ignore_ascii_case(&d.email))
            {
                self.give_worker(&d.email, Work::SettingsChanged(Pin(d.pin)));
            }
        }
    }

    async fn poll_all(&mut self) {
        if !self.ctx.cfg.enabled() {
            return;
        }
        let devices = match self.ctx.store.list_devices().await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("cannot list devices: {e}");
                return;
            }
        };
        for d in devices {
            self.give_worker(&d.email, Work::Poll(Pin(d.pin)));
        }
    }
}

/// A batch sent to the device and not answered yet.
#[derive(Debug)]
struct Sent {
    database: Database,
    at: Instant,
    /// (uid, the version sent; None: a deletion).
    records: Vec<(String, Option<String>)>,
}

/// The slow synchronization under way.
#[derive(Debug)]
struct Slow {
    pin: Pin,
    overwrite: bool,
    settings: Resolved,
    queue: VecDeque<Database>,
    current: Option<Database>,
    /// The current database's server records fetched by its full listing.
    prefetched: HashMap<String, (String, String)>,
    /// Device batches of a database not reached yet.
    buffered: Vec<schema::OrganizerBatch>,
    counts: HashMap<Database, schema::DatabaseCount>,
    /// When it last moved (started, took a batch of the device's, went on to a database):
    /// a slow sync of many records on a slow server is not a stalled one.
    moved: Instant,
}

/// Why a step could not be taken.
#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error(transparent)]
    Dav(#[from] DavError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Other(String),
}

/// One user's synchronization.
struct Worker {
    email: String,
    ctx: Arc<Ctx>,
    client: Option<DavClient>,
    collections: HashMap<Database, String>,
    in_flight: HashMap<u64, Sent>,
    next_batch: u64,
    slow: Option<Slow>,
    /// Resources reported as malformed, by href, with the etag reported (not again until it
    /// changes).
    reported: HashMap<String, String>,
    /// Set while a poll waits in this worker's channel.
    poll_queued: Arc<std::sync::atomic::AtomicBool>,
}

fn envelope(body: Body) -> Envelope {
    Envelope {
        version: u32::from(bramble_proto::PROTOCOL_VERSION),
        body: Some(body),
    }
}

/// A resource name for a record: its UID where that is a plain name, else a digest of it.
fn resource_name(db: Database, uid: &str) -> String {
    let plain = !uid.is_empty()
        && uid.len() <= 120
        && uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
        && !uid.starts_with('.');
    if plain {
        format!("{uid}.{}", db.extension())
    } else {
        let digest = ring::digest::digest(&ring::digest::SHA256, uid.as_bytes());
        format!("{}.{}", hex::encode(&digest.as_ref()[..16]), db.extension())
    }
}

/// Who wins a conflict under `rule`: true when the device does.
fn device_wins(rule: Conflict, device_ms: i64, server_ms: i64) -> bool {
    match rule {
        Conflict::ServerWins => false,
        Conflict::DeviceWins => true,
        Conflict::NewestWins => device_ms > server_ms,
    }
}

fn outcome(uid: &str, state: RecordState, version: &str, detail: &str) -> schema::RecordOutcome {
    schema::RecordOutcome {
        uid: uid.to_owned(),
        state: state as i32,
        version: version.to_owned(),
        detail: detail.to_owned(),
        server_record: None,
    }
}

impl Worker {
    fn new(
        email: String,
        ctx: Arc<Ctx>,
        poll_queued: Arc<std::sync::atomic::AtomicBool>,
    ) -> Worker {
        Worker {
            email,
            ctx,
            client: None,
            collections: HashMap::new(),
            in_flight: HashMap::new(),
            // Unique across restarts, so a late answer to an old batch matches nothing.
            next_batch: u64::try_from(now_ms()).unwrap_or(1).saturating_mul(1000),
            slow: None,
            reported: HashMap::new(),
            poll_queued,
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Work>) {
        while let Some(work) = rx.recv().await {
            let r = match work {
                Work::Device(pin, env) => self.device(pin, env).await,
                Work::Poll(pin) => {
                    self.poll_queued
                        .store(false, std::sync::atomic::Ordering::Release);
                    self.poll(pin).await
                }
                Work::SettingsChanged(pin) => self.send_configuration(pin).await,
            };
            if let Err(e) = r {
                tracing::warn!(user = %self.email, "organizer synchronization: {e}");
                if matches!(e, SyncError::Dav(_)) {
                    // Log in again next time (the password or the server may have changed).
                    self.client = None;
                }
            }
        }
    }

    async fn send(&self, pin: Pin, body: Body) -> Result<(), SyncError> {
        self.ctx
            .dispatcher
            .send(pin, envelope(body))
            .await
            .map(|_| ())
            .map_err(|e| SyncError::Other(format!("cannot send to PIN {pin}: {e}")))
    }

    async fn settings(&self) -> Result<Resolved, SyncError> {
        Ok(settings::resolve(&self.ctx.store, &self.ctx.cfg, &self.email).await?)
    }

    async fn send_configuration(&mut self, pin: Pin) -> Result<(), SyncError> {
        let s = self.settings().await?;
        self.send(pin, Body::SyncConfiguration(s.to_proto())).await
    }

    async fn device(&mut self, pin: Pin, env: Envelope) -> Result<(), SyncError> {
        match env.body {
            Some(Body::SyncConfigRequest(_)) => self.send_configuration(pin).await,
            Some(Body::SlowSyncStart(s)) => self.slow_start(pin, s.overwrite_device).await,
            Some(Body::OrganizerBatch(b)) => self.device_batch(pin, b).await,
            Some(Body::OrganizerBatchResult(r)) => self.device_result(r).await,
            Some(Body::DeviceBackup(b)) => self.backup(pin, b).await,
            _ => Ok(()),
        }
    }

    // ---- the CalDAV/CardDAV side

    async fn client(&mut self) -> Result<DavClient, SyncError> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let cfg = &self.ctx.cfg;
        let url = cfg
            .url
            .clone()
            .ok_or_else(|| SyncError::Other("[server.sync] url is not set".into()))?;
        let (account, home) = match (&cfg.service_user, &cfg.service_password) {
            (Some(u), Some(p)) => (
                DavAccount {
                    url,
                    username: u.clone(),
                    password: p.clone(),
                },
                Some(cfg.home.replace("{email}", &self.email)),
            ),
            _ => {
                let password = self
                    .ctx
                    .passwords
                    .as_ref()
                    .and_then(|l| l.get(&self.email))
                    .ok_or_else(|| {
                        SyncError::Other(format!(
                            "no password is kept for {} and [server.sync] has no service account: \
                             set one with `bramble admin user mail-password {}`",
                            self.email, self.email
                        ))
                    })?;
                (
                    DavAccount {
                        url,
                        username: self.email.clone(),
                        password,
                    },
                    None,
                )
            }
        };
        let client = DavClient::connect(&account, home.as_deref()).await?;
        self.client = Some(client.clone());
        Ok(client)
    }

    async fn collection(&mut self, db: Database) -> Result<String, SyncError> {
        if let Some(c) = self.collections.get(&db) {
            return Ok(c.clone());
        }
        let href = match self
            .ctx
            .store
            .sync_collection(&self.email, db.as_str())
            .await?
        {
            Some((href, _)) => href,
            None => {
                let client = self.client().await?;
                let href = client.collection(db).await?;
                self.ctx
                    .store
                    .set_sync_collection(&self.email, db.as_str(), &href, None)
                    .await?;
                href
            }
        };
        self.collections.insert(db, href.clone());
        Ok(href)
    }

    async fn problem(&self, db: Database, item: &str, side: &str, detail: &str) {
        tracing::warn!(user = %self.email, database = %db, item, side, "organizer record not synchronized: {detail}");
        if let Err(e) = self
            .ctx
            .store
            .add_sync_problem(&self.email, db.as_str(), item, side, detail)
            .await
        {
            tracing::warn!(user = %self.email, "cannot record the problem: {e}");
        }
    }

    /// Asks the server what changed in `db` (everything with `full`), records it, and
    /// returns the records fetched: uid → (etag, data).
    async fn refresh(
        &mut self,
        db: Database,
        mut full: bool,
    ) -> Result<HashMap<String, (String, String)>, SyncError> {
        let collection = self.collection(db).await?;
        let client = self.client().await?;
        let token = if full {
            None
        } else {
            self.ctx
                .store
                .sync_collection(&self.email, db.as_str())
                .await?
                .and_then(|(_, t)| t)
        };
        let changes = match client.changes(&collection, token.as_deref()).await {
            Err(DavError::TokenInvalid) => {
                full = true;
                client.changes(&collection, None).await?
            }
            other => other?,
        };
        full |= token.is_none();
        let rows = self
            .ctx
            .store
            .sync_records(&self.email, db.as_str())
            .await?;
        let by_href: HashMap<&str, &SyncRecordRow> = rows
            .iter()
            .filter_map(|r| r.href.as_deref().map(|h| (h, r)))
            .collect();
        let by_uid: HashMap<&str, &SyncRecordRow> =
            rows.iter().map(|r| (r.uid.as_str(), r)).collect();
        let wanted: Vec<String> = changes
            .changed
            .iter()
            .filter(|l| {
                by_href.get(l.href.as_str()).and_then(|r| r.etag.as_deref()) != Some(&l.etag)
                    && self.reported.get(&l.href) != Some(&l.etag)
            })
            .map(|l| l.href.clone())
            .collect();
        let fetched = if wanted.is_empty() {
            Vec::new()
        } else {
            client.fetch(db, &collection, &wanted).await?
        };
        let now = now_ms();
        let mut updates: Vec<SyncRecordRow> = Vec::new();
        let mut got = HashMap::new();
        let mut seen_uids: HashSet<String> = HashSet::new();
        for Fetched { href, etag, data } in fetched {
            let rec = match parse(db, &data) {
                Ok(r) => r,
                Err(e) => {
                    self.problem(db, &href, "server", &format!("{href}: {e}"))
                        .await;
                    self.reported.insert(href, etag);
                    continue;
                }
            };
            let old = by_uid.get(rec.uid.as_str());
            if let Some(other) = old.and_then(|r| r.href.as_deref()).filter(|h| *h != href)
                && changes.changed.iter().any(|l| l.href == other)
            {
                self.problem(
                    db,
                    &href,
                    "server",
                    &format!("{href}: its UID {:?} is also that of {other}", rec.uid),
                )
                .await;
                self.reported.insert(href, etag);
                continue;
            }
            if !seen_uids.insert(rec.uid.clone()) {
                continue;
            }
            let changed = old.and_then(|r| r.etag.as_deref()) != Some(&etag);
            updates.push(SyncRecordRow {
                uid: rec.uid.clone(),
                href: Some(href),
                etag: Some(etag.clone()),
                device_etag: old.and_then(|r| r.device_etag.clone()),
                server_seen_at: if changed {
                    now
                } else {
                    old.map_or(now, |r| r.server_seen_at)
                },
                modified_ms: rec.summary.modified_ms,
            });
            got.insert(rec.uid, (etag, data));
        }
        // What the server no longer has.
        let gone: HashSet<&str> = if full {
            let listed: HashSet<&str> = changes.changed.iter().map(|l| l.href.as_str()).collect();
            by_href
                .keys()
                .copied()
                .filter(|h| !listed.contains(h))
                .collect()
        } else {
            changes.deleted.iter().map(String::as_str).collect()
        };
        let mut forget = Vec::new();
        for h in gone {
            if let Some(r) = by_href.get(h) {
                if updates.iter().any(|u| u.uid == r.uid) {
                    continue;
                }
                if r.device_etag.is_none() {
                    forget.push(r.uid.clone());
                } else {
                    updates.push(SyncRecordRow {
                        href: None,
                        etag: None,
                        server_seen_at: now,
                        ..(*r).clone()
                    });
                }
            }
        }
        self.ctx
            .store
            .put_sync_records(&self.email, db.as_str(), &updates)
            .await?;
        self.ctx
            .store
            .delete_sync_records(&self.email, db.as_str(), &forget)
            .await?;
        self.ctx
            .store
            .set_sync_collection(&self.email, db.as_str(), &collection, Some(&changes.token))
            .await?;
        Ok(got)
    }

    // ---- server to device

    /// Sends the device what it lacks of `db`: records whose version it does not hold (and,
    /// outside the slow sync, deletions). `last` marks the end of a slow sync's database.
    async fn push(
        &mut self,
        pin: Pin,
        db: Database,
        slow: bool,
        mut have: HashMap<String, (String, String)>,
    ) -> Result<u32, SyncError> {
        let retry = self.ctx.cfg.retry_after;
        // An unanswered batch is sent again after `retry_after`; its answer is still taken
        // when it comes late, unless it is very late.
        self.in_flight.retain(|_, s| s.at.elapsed() < retry * 10);
        let busy: HashSet<&str> = self
            .in_flight
            .values()
            .filter(|s| s.database == db && s.at.elapsed() < retry)
            .flat_map(|s| s.records.iter().map(|(u, _)| u.as_str()))
            .collect();
        let rows = self
            .ctx
            .store
            .sync_records(&self.email, db.as_str())
            .await?;
        let todo: Vec<&SyncRecordRow> = rows
            .iter()
            .filter(|r| !busy.contains(r.uid.as_str()))
            .filter(|r| match &r.etag {
                Some(e) => r.device_etag.as_deref() != Some(e),
                None => !slow && r.device_etag.is_some(),
            })
            .collect();
        let missing: Vec<String> = todo
            .iter()
            .filter(|r| r.etag.is_some() && !have.contains_key(&r.uid))
            .filter_map(|r| r.href.clone())
            .collect();
        if !missing.is_empty() {
            let collection = self.collection(db).await?;
            let client = self.client().await?;
            for f in client.fetch(db, &collection, &missing).await? {
                match parse(db, &f.data) {
                    Ok(rec) => {
                        have.insert(rec.uid, (f.etag, f.data));
                    }
                    Err(e) => {
                        self.problem(db, &f.href, "server", &format!("{}: {e}", f.href))
                            .await
                    }
                }
            }
        }
        let mut records = Vec::new();
        for r in todo {
            match &r.etag {
                None => records.push(schema::OrganizerRecord {
                    uid: r.uid.clone(),
                    deleted: true,
                    ..Default::default()
                }),
                Some(_) => {
                    if let Some((etag, data)) = have.remove(&r.uid) {
                        records.push(schema::OrganizerRecord {
                            uid: r.uid.clone(),
                            data,
                            version: etag,
                            modified_ms: r.modified_ms.unwrap_or(r.server_seen_at),
                            ..Default::default()
                        });
                    }
                }
            }
        }
        let n = u32::try_from(records.len()).unwrap_or(u32::MAX);
        let mut batch = Vec::new();
        let mut bytes = 0;
        let mut sent_any = false;
        let total = records.len();
        for (i, rec) in records.into_iter().enumerate() {
            bytes += rec.data.len() + rec.uid.len() + rec.version.len() + 16;
            batch.push(rec);
            let full = batch.len() >= BATCH_RECORDS || bytes >= BATCH_BYTES;
            if full || i + 1 == total {
                self.send_batch(
                    pin,
                    db,
                    slow,
                    std::mem::take(&mut batch),
                    slow && i + 1 == total,
                )
                .await?;
                sent_any = true;
                bytes = 0;
            }
        }
        if slow && !sent_any {
            self.send_batch(pin, db, true, Vec::new(), true).await?;
        }
        Ok(n)
    }

    async fn send_batch(
        &mut self,
        pin: Pin,
        db: Database,
        slow: bool,
        records: Vec<schema::OrganizerRecord>,
        last: bool,
    ) -> Result<(), SyncError> {
        self.next_batch += 1;
        let batch_id = self.next_batch;
        if !records.is_empty() {
            self.in_flight.insert(
                batch_id,
                Sent {
                    database: db,
                    at: Instant::now(),
                    records: records
                        .iter()
                        .map(|r| (r.uid.clone(), (!r.deleted).then(|| r.version.clone())))
                        .collect(),
                },
            );
        }
        self.send(
            pin,
            Body::OrganizerBatch(schema::OrganizerBatch {
                database: db.to_proto(),
                batch_id,
                slow,
                records,
                last,
            }),
        )
        .await
    }

    /// The device's answer to a batch of ours.
    async fn device_result(&mut self, r: schema::OrganizerBatchResult) -> Result<(), SyncError> {
        let Some(sent) = self.in_flight.remove(&r.batch_id) else {
            tracing::debug!(user = %self.email, batch = r.batch_id, "an answer to a batch not in flight (answered before, or too late)");
            return Ok(());
        };
        tracing::debug!(user = %self.email, batch = r.batch_id, outcomes = r.outcomes.len(), "the device answered a batch");
        let db = sent.database;
        let rows = self
            .ctx
            .store
            .sync_records(&self.email, db.as_str())
            .await?;
        let by_uid: HashMap<&str, &SyncRecordRow> =
            rows.iter().map(|r| (r.uid.as_str(), r)).collect();
        let mut updates = Vec::new();
        let mut forget = Vec::new();
        for o in &r.outcomes {
            let Some((uid, version)) = sent.records.iter().find(|(u, _)| *u == o.uid) else {
                continue;
            };
            if o.state == RecordState::RecordRejected as i32 {
                self.problem(
                    db,
                    uid,
                    "device",
                    &format!("the device refused it: {}", o.detail),
                )
                .await;
            }
            let Some(row) = by_uid.get(uid.as_str()) else {
                continue;
            };
            match version {
                // A deletion the device took: nothing is left of the record.
                None if row.etag.is_none() => forget.push(uid.clone()),
                None => {}
                Some(v) => updates.push(SyncRecordRow {
                    device_etag: Some(v.clone()),
                    ..(*row).clone()
                }),
            }
        }
        self.ctx
            .store
            .put_sync_records(&self.email, db.as_str(), &updates)
            .await?;
        self.ctx
            .store
            .delete_sync_records(&self.email, db.as_str(), &forget)
            .await?;
        Ok(())
    }

    async fn poll(&mut self, pin: Pin) -> Result<(), SyncError> {
        if let Some(slow) = &self.slow {
            // Stalled (the device went away mid-way): it asks again on its next activation.
            let idle = slow.moved.elapsed();
            if idle > self.ctx.cfg.retry_after * 10 {
                tracing::warn!(user = %self.email, "a slow synchronization stalled (nothing from the device for {}) and was given up; the device asks for it again when it next activates", humantime::format_duration(Duration::from_secs(idle.as_secs())));
                self.slow = None;
            }
            return Ok(());
        }
        let s = self.settings().await?;
        if !s.enabled() {
            return Ok(());
        }
        let status = self.ctx.store.user(&self.email).await?.map(|u| u.status);
        if status != Some(UserStatus::Completed) {
            return Ok(());
        }
        for d in s.databases.iter().filter(|d| d.enabled) {
            let got = self.refresh(d.database, false).await?;
            self.push(pin, d.database, false, got).await?;
        }
        Ok(())
    }

    // ---- device to server

    async fn device_batch(&mut self, pin: Pin, b: schema::OrganizerBatch) -> Result<(), SyncError> {
        let Some(db) = Database::from_proto(b.database) else {
            let outcomes = b
                .records
                .iter()
                .map(|r| {
                    outcome(
                        &r.uid,
                        RecordState::RecordRejected,
                        "",
                        "this server does not know that database",
                    )
                })
                .collect();
            return self
                .send(
                    pin,
                    Body::OrganizerBatchResult(schema::OrganizerBatchResult {
                        database: b.database,
                        batch_id: b.batch_id,
                        outcomes,
                    }),
                )
                .await;
        };
        if b.slow {
            if let Some(s) = self.slow.as_mut().filter(|s| s.pin == pin) {
                s.moved = Instant::now();
            }
            let waiting = self.slow.as_ref().map(|s| (s.pin, s.current));
            match waiting {
                Some((p, Some(current))) if p == pin && current == db => {}
                Some((p, _)) if p == pin => {
                    if let Some(s) = self.slow.as_mut() {
                        s.buffered.push(b);
                    }
                    return Ok(());
                }
                // A slow batch outside a slow sync (a late repeat): taken like any other,
                // still without deletes.
                _ => {}
            }
        }
        let settings = self.settings().await?;
        let setting = settings.of(db).cloned();
        let refuse = match &setting {
            _ if !settings.configured => Some("organizer data is not synchronized on this server"),
            Some(s) if !s.enabled => Some("your administrator does not synchronize this database"),
            Some(s) if s.direction == Direction::ServerToDevice => Some(
                "this database is synchronized from the server only; the change stays on the device",
            ),
            None => Some("this database is not synchronized"),
            _ => None,
        };
        let outcomes = match (refuse, setting) {
            (Some(why), _) => b
                .records
                .iter()
                .map(|r| outcome(&r.uid, RecordState::RecordRejected, "", why))
                .collect(),
            (None, None) => Vec::new(),
            (None, Some(s)) => self.take_all(db, &b, s.conflict).await?,
        };
        if b.slow
            && let Some(slow) = self.slow.as_mut()
        {
            let c = slow
                .counts
                .entry(db)
                .or_insert_with(|| schema::DatabaseCount {
                    database: db.to_proto(),
                    ..Default::default()
                });
            for o in &outcomes {
                if o.state == RecordState::RecordRejected as i32 {
                    c.rejected += 1;
                } else {
                    c.from_device += 1;
                }
            }
        }
        self.send(
            pin,
            Body::OrganizerBatchResult(schema::OrganizerBatchResult {
                database: b.database,
                batch_id: b.batch_id,
                outcomes,
            }),
        )
        .await?;
        if b.slow
            && b.last
            && self
                .slow
                .as_ref()
                .is_some_and(|s| s.pin == pin && s.current == Some(db))
        {
            let have = self
                .slow
                .as_mut()
                .map(|s| std::mem::take(&mut s.prefetched))
                .unwrap_or_default();
            let n = self.push(pin, db, true, have).await?;
            self.count_to_device(db, n);
            self.advance(pin).await?;
        }
        Ok(())
    }

    fn count_to_device(&mut self, db: Database, n: u32) {
        if let Some(slow) = self.slow.as_mut() {
            slow.counts
                .entry(db)
                .or_insert_with(|| schema::DatabaseCount {
                    database: db.to_proto(),
                    ..Default::default()
                })
                .to_device += n;
        }
    }

    /// Takes each record of a device batch: the outcomes, in order.
    async fn take_all(
        &mut self,
        db: Database,
        b: &schema::OrganizerBatch,
        rule: Conflict,
    ) -> Result<Vec<schema::RecordOutcome>, SyncError> {
        let collection = self.collection(db).await?;
        let client = self.client().await?;
        let rows = self
            .ctx
            .store
            .sync_records(&self.email, db.as_str())
            .await?;
        let by_uid: HashMap<String, SyncRecordRow> =
            rows.into_iter().map(|r| (r.uid.clone(), r)).collect();
        // The server's copies that may be needed to settle a conflict or to match a record.
        let hrefs: Vec<String> = b
            .records
            .iter()
            .filter_map(|r| by_uid.get(&r.uid))
            .filter_map(|row| row.href.clone())
            .collect();
        let mut server: HashMap<String, (String, String)> = HashMap::new();
        if !hrefs.is_empty() {
            for f in client.fetch(db, &collection, &hrefs).await? {
                if let Ok(rec) = parse(db, &f.data) {
                    server.insert(rec.uid, (f.etag, f.data));
                }
            }
        }
        let mut outcomes = Vec::with_capacity(b.records.len());
        let mut updates: Vec<SyncRecordRow> = Vec::new();
        let mut forget: Vec<String> = Vec::new();
        for rec in &b.records {
            let row = by_uid.get(&rec.uid).cloned();
            let o = self
                .take(
                    &client,
                    db,
                    &collection,
                    rec,
                    row,
                    server.get(&rec.uid).cloned(),
                    rule,
                    b.slow,
                    &mut updates,
                    &mut forget,
                )
                .await;
            let o = match o {
                Ok(o) => o,
                // The organizer server failed for this record: not answered as taken, so the
                // device sends it again later.
                Err(SyncError::Dav(e)) if !matches!(e, DavError::Unreachable { .. }) => {
                    self.problem(db, &rec.uid, "server", &e.to_string()).await;
                    outcome(&rec.uid, RecordState::RecordRejected, "", &e.to_string())
                }
                Err(e) => {
                    self.ctx
                        .store
                        .put_sync_records(&self.email, db.as_str(), &updates)
                        .await?;
                    return Err(e);
                }
            };
            outcomes.push(o);
        }
        self.ctx
            .store
            .put_sync_records(&self.email, db.as_str(), &updates)
            .await?;
        self.ctx
            .store
            .delete_sync_records(&self.email, db.as_str(), &forget)
            .await?;
        Ok(outcomes)
    }

    #[allow(clippy::too_many_arguments)]
    async fn take(
        &self,
        client: &DavClient,
        db: Database,
        collection: &str,
        rec: &schema::OrganizerRecord,
        row: Option<SyncRecordRow>,
        server: Option<(String, String)>,
        rule: Conflict,
        slow: bool,
        updates: &mut Vec<SyncRecordRow>,
        forget: &mut Vec<String>,
    ) -> Result<schema::RecordOutcome, SyncError> {
        let now = now_ms();
        let uid = rec.uid.as_str();
        let server_ms = |row: &SyncRecordRow, data: &str| {
            parse(db, data)
                .ok()
                .and_then(|r| r.summary.modified_ms)
                .unwrap_or(row.server_seen_at)
        };
        let lost =
            |row: &SyncRecordRow, etag: String, data: String, updates: &mut Vec<SyncRecordRow>| {
                updates.push(SyncRecordRow {
                    device_etag: Some(etag.clone()),
                    ..row.clone()
                });
                schema::RecordOutcome {
                    uid: uid.to_owned(),
                    state: RecordState::RecordConflictLost as i32,
                    version: etag.clone(),
                    detail: "the copy on the server was changed too, and it was kept".into(),
                    server_record: Some(schema::OrganizerRecord {
                        uid: uid.to_owned(),
                        data,
                        version: etag,
                        modified_ms: row.modified_ms.unwrap_or(row.server_seen_at),
                        ..Default::default()
                    }),
                }
            };
        if rec.deleted {
            if slow {
                return Ok(outcome(
                    uid,
                    RecordState::RecordRejected,
                    "",
                    "nothing is deleted during the slow synchronization",
                ));
            }
            let Some(row) = row else {
                return Ok(outcome(uid, RecordState::RecordStored, "", ""));
            };
            let Some(href) = row.href.clone() else {
                forget.push(uid.to_owned());
                return Ok(outcome(uid, RecordState::RecordStored, "", ""));
            };
            let current = row.etag.clone().unwrap_or_default();
            let agreed = rec.version == current;
            let server_won =
                |server: Option<(String, String)>, updates: &mut Vec<SyncRecordRow>| match server {
                    Some((etag, data)) => lost(&row, etag, data, updates),
                    None => outcome(
                        uid,
                        RecordState::RecordRejected,
                        "",
                        "the server's copy changed and could not be read",
                    ),
                };
            if !agreed {
                let device_first = device_wins(
                    rule,
                    rec.modified_ms,
                    server
                        .as_ref()
                        .map_or(row.server_seen_at, |(_, d)| server_ms(&row, d)),
                );
                if !device_first {
                    return Ok(server_won(server, updates));
                }
            }
            let if_match = if agreed { Some(current.as_str()) } else { None };
            return match client.delete(&href, if_match).await? {
                DeleteOutcome::Deleted | DeleteOutcome::Gone => {
                    forget.push(uid.to_owned());
                    Ok(outcome(uid, RecordState::RecordStored, "", ""))
                }
                DeleteOutcome::Conflict => {
                    let fresh = client
                        .fetch(db, collection, std::slice::from_ref(&href))
                        .await?;
                    let fresh = fresh.into_iter().next().map(|f| (f.etag, f.data));
                    if device_wins(rule, rec.modified_ms, now) {
                        client.delete(&href, None).await?;
                        forget.push(uid.to_owned());
                        Ok(outcome(uid, RecordState::RecordStored, "", ""))
                    } else {
                        Ok(server_won(fresh, updates))
                    }
                }
            };
        }
        let parsed = match parse(db, &rec.data) {
            Ok(p) => p,
            Err(e) => {
                self.problem(db, uid, "device", &e.to_string()).await;
                return Ok(outcome(
                    uid,
                    RecordState::RecordRejected,
                    "",
                    &e.to_string(),
                ));
            }
        };
        if parsed.uid != rec.uid {
            return Ok(outcome(
                uid,
                RecordState::RecordRejected,
                "",
                &format!("its UID {:?} is not the one it was sent under", parsed.uid),
            ));
        }
        let stored = |href: String, etag: String, updates: &mut Vec<SyncRecordRow>| {
            updates.push(SyncRecordRow {
                uid: uid.to_owned(),
                href: Some(href),
                etag: Some(etag.clone()),
                device_etag: Some(etag.clone()),
                server_seen_at: now,
                modified_ms: parsed.summary.modified_ms.or(Some(rec.modified_ms)),
            });
            outcome(uid, RecordState::RecordStored, &etag, "")
        };
        let on_server = row
            .as_ref()
            .and_then(|r| r.href.clone().map(|h| (r.clone(), h)));
        let Some((row, href)) = on_server else {
            return match client
                .create(db, collection, &resource_name(db, uid), &rec.data)
                .await
            {
                Ok(PutOutcome::Stored { href, etag }) => Ok(stored(href, etag, updates)),
                Ok(PutOutcome::Conflict) | Err(DavError::Status { status: 409, .. }) => {
                    let detail =
                        "a record with this UID is already on the server under another name";
                    self.problem(db, uid, "device", detail).await;
                    Ok(outcome(uid, RecordState::RecordRejected, "", detail))
                }
                Err(e) => Err(e.into()),
            };
        };
        let current = row.etag.clone().unwrap_or_default();
        if slow
            && let Some((etag, data)) = &server
            && parse(db, data).is_ok_and(|s| s.summary == parsed.summary)
        {
            // The same record on both sides: matched, nothing written.
            updates.push(SyncRecordRow {
                device_etag: Some(etag.clone()),
                etag: Some(etag.clone()),
                ..row.clone()
            });
            return Ok(outcome(uid, RecordState::RecordStored, etag, ""));
        }
        let agreed = !slow && rec.version == current;
        if agreed {
            match client.update(db, &href, &rec.data, &current).await? {
                PutOutcome::Stored { href, etag } => return Ok(stored(href, etag, updates)),
                PutOutcome::Conflict => {}
            }
        }
        // Changed on both sides.
        let server_copy = match (agreed, server) {
            (false, Some(s)) => Some(s),
            _ => client
                .fetch(db, collection, std::slice::from_ref(&href))
                .await?
                .into_iter()
                .next()
                .map(|f| (f.etag, f.data)),
        };
        let Some((etag, data)) = server_copy else {
            // Gone from the server meanwhile: the device's copy is all there is.
            return match client
                .create(db, collection, &resource_name(db, uid), &rec.data)
                .await?
            {
                PutOutcome::Stored { href, etag } => Ok(stored(href, etag, updates)),
                PutOutcome::Conflict => Ok(outcome(
                    uid,
                    RecordState::RecordRejected,
                    "",
                    "the server's copy changed while it was written; it is sent again",
                )),
            };
        };
        // A server copy this service had not seen yet changed at the latest now.
        let server_changed = if row.etag.as_deref() == Some(etag.as_str()) {
            server_ms(&row, &data)
        } else {
            parse(db, &data)
                .ok()
                .and_then(|r| r.summary.modified_ms)
                .unwrap_or(now)
        };
        if device_wins(rule, rec.modified_ms, server_changed) {
            match client.update(db, &href, &rec.data, &etag).await? {
                PutOutcome::Stored { href, etag } => Ok(stored(href, etag, updates)),
                PutOutcome::Conflict => Ok(outcome(
                    uid,
                    RecordState::RecordRejected,
                    "",
                    "the server's copy changed again while it was written; it is sent again",
                )),
            }
        } else {
            Ok(lost(&row, etag, data, updates))
        }
    }

    // ---- the slow synchronization

    async fn slow_start(&mut self, pin: Pin, overwrite: bool) -> Result<(), SyncError> {
        let settings = self.settings().await?;
        self.ctx.store.forget_device_records(&self.email).await?;
        self.in_flight.clear();
        let queue: VecDeque<Database> = settings
            .databases
            .iter()
            .filter(|d| settings.configured && d.enabled)
            .map(|d| d.database)
            .collect();
        tracing::info!(user = %self.email, %pin, overwrite, databases = queue.len(), "slow synchronization started");
        self.slow = Some(Slow {
            pin,
            overwrite,
            settings,
            queue,
            current: None,
            prefetched: HashMap::new(),
            buffered: Vec::new(),
            counts: HashMap::new(),
            moved: Instant::now(),
        });
        self.advance(pin).await
    }

    /// Goes on to the next database, or finishes.
    async fn advance(&mut self, pin: Pin) -> Result<(), SyncError> {
        loop {
            let Some(slow) = self.slow.as_mut() else {
                return Ok(());
            };
            let Some(db) = slow.queue.pop_front() else {
                return self.finish(pin).await;
            };
            slow.current = Some(db);
            slow.moved = Instant::now();
            let takes_device = !slow.overwrite
                && slow
                    .settings
                    .of(db)
                    .is_some_and(|d| d.direction == Direction::Bidirectional);
            let prefetched = self.refresh(db, true).await?;
            if takes_device {
                let Some(slow) = self.slow.as_mut() else {
                    return Ok(());
                };
                // the listing of a large collection is no stall either
                slow.moved = Instant::now();
                slow.prefetched = prefetched;
                let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut slow.buffered)
                    .into_iter()
                    .partition(|b| Database::from_proto(b.database) == Some(db));
                slow.buffered = others;
                // Taken in order; the last one goes on to the next database itself.
                for b in mine {
                    Box::pin(self.device_batch(pin, b)).await?;
                }
                return Ok(());
            }
            let n = self.push(pin, db, true, prefetched).await?;
            self.count_to_device(db, n);
        }
    }

    async fn finish(&mut self, pin: Pin) -> Result<(), SyncError> {
        let Some(slow) = self.slow.take() else {
            return Ok(());
        };
        let mut counts: Vec<schema::DatabaseCount> = slow.counts.into_values().collect();
        counts.sort_by_key(|c| c.database);
        let summary: Vec<String> = counts
            .iter()
            .filter_map(|c| {
                Database::from_proto(c.database).map(|d| {
                    format!(
                        "{} {} to the device, {} from it",
                        d.as_str(),
                        c.to_device,
                        c.from_device
                    )
                })
            })
            .collect();
        self.send(pin, Body::SlowSyncDone(schema::SlowSyncDone { counts }))
            .await?;
        tracing::info!(user = %self.email, %pin, "slow synchronization complete: {}", summary.join("; "));
        if slow.settings.backup {
            self.restore(pin).await?;
        }
        let user = self.ctx.store.user(&self.email).await?;
        if user.is_some_and(|u| u.status == UserStatus::ServicesReceived) {
            let reason = format!(
                "activation complete on PIN {pin} (slow synchronization: {})",
                if summary.is_empty() {
                    "nothing to synchronize".into()
                } else {
                    summary.join("; ")
                }
            );
            self.ctx
                .store
                .set_user_status(&self.email, UserStatus::Completed, Some(&reason))
                .await?;
            tracing::info!(user = %self.email, status = %UserStatus::Completed, "{reason}");
            let _ = self.ctx.events.send(ServerEvent::Activation {
                email: self.email.clone(),
                status: UserStatus::Completed.to_string(),
            });
            self.send(
                pin,
                Body::ActivationComplete(schema::ActivationComplete {
                    email: self.email.clone(),
                }),
            )
            .await?;
        }
        Ok(())
    }

    // ---- wireless backup

    async fn backup(&mut self, pin: Pin, b: schema::DeviceBackup) -> Result<(), SyncError> {
        let settings = self.settings().await?;
        if !(settings.configured && settings.backup) {
            return Ok(());
        }
        if b.settings.len() > MAX_BACKUP {
            tracing::warn!(user = %self.email, %pin, bytes = b.settings.len(), "a wireless backup larger than {MAX_BACKUP} bytes was refused");
            return Ok(());
        }
        let sealed = self.seal(&b.settings)?;
        let kept = self
            .ctx
            .store
            .put_device_backup(&self.email, pin.0, b.taken_ms, &sealed)
            .await?;
        tracing::info!(user = %self.email, %pin, kept, bytes = b.settings.len(), "wireless backup received");
        Ok(())
    }

    async fn restore(&mut self, pin: Pin) -> Result<(), SyncError> {
        let Some(b) = self.ctx.store.device_backup(&self.email).await? else {
            return Ok(());
        };
        if b.pin == pin.0 {
            return Ok(());
        }
        let Some(settings) = self.open(&b.sealed) else {
            tracing::error!(user = %self.email, "the wireless backup does not decrypt; it is not restored");
            return Ok(());
        };
        tracing::info!(user = %self.email, %pin, from = %Pin(b.pin), "restoring the wireless backup");
        self.send(
            pin,
            Body::BackupRestore(schema::BackupRestore {
                settings: settings.into(),
                taken_ms: b.taken_at,
                from_pin: Pin(b.pin).to_string(),
            }),
        )
        .await
    }

    fn aad(&self) -> Vec<u8> {
        let mut a = BACKUP_AAD.to_vec();
        a.extend_from_slice(self.email.as_bytes());
        a
    }

    fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, SyncError> {
        Ok(self.ctx.backup_key.seal(&self.aad(), plain)?)
    }

    fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        self.ctx.backup_key.open(&self.aad(), sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names_are_plain_or_digests() {
        assert_eq!(resource_name(Database::Contacts, "c-1@x"), "c-1@x.vcf");
        assert_eq!(resource_name(Database::Calendar, "e_2.3"), "e_2.3.ics");
        let odd = resource_name(Database::Tasks, "a/b c%");
        assert!(odd.ends_with(".ics") && odd.len() == 36, "{odd}");
        assert_ne!(odd, resource_name(Database::Tasks, "a/b c%2"));
        assert!(resource_name(Database::Memos, ".hidden").ends_with(".ics"));
        assert_ne!(resource_name(Database::Memos, ".hidden"), ".hidden.ics");
    }

    #[test]
    fn conflict_rules_pick_the_winner() {
        assert!(!device_wins(Conflict::ServerWins, 10, 1));
        assert!(device_wins(Conflict::DeviceWins, 1, 10));
        assert!(device_wins(Conflict::NewestWins, 10, 1));
        assert!(!device_wins(Conflict::NewestWins, 1, 10));
        assert!(
            !device_wins(Conflict::NewestWins, 5, 5),
            "a tie keeps the server's"
        );
    }
}
