//! The routing table, the connections' shared handles, frames in flight, and the hand-off
//! between live delivery and the disk queue.
//!
//! No lock here is held across an `.await`: a sender is cloned under a std mutex, the lock
//! released, then the frame is handed over with `try_send` (never waiting on a slow peer:
//! when its channel is full the frame goes to the disk queue instead).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bramble_proto::schema::{self, control::Msg};
use bramble_proto::{Address, Frame, Pin, SrpId};
use sqlx::SqlitePool;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::RelayConfig;
use crate::db::{self, DbOp};

/// Frames in flight to one connection (sent, not yet acked) at most; past that, new frames
/// for it go to the disk queue until it acks.
pub(crate) const WINDOW_FRAMES: usize = 1024;
/// Bytes in flight to one connection at most.
pub(crate) const WINDOW_BYTES: usize = 16 << 20;
/// Depth of a connection's outgoing channel.
pub(crate) const CONN_CHANNEL: usize = 256;
/// Shards of the PIN routing table.
const PIN_SHARDS: usize = 64;

/// Locks a std mutex, ignoring poisoning (no code here panics while holding one).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the relay hands a connection's writer.
#[derive(Debug)]
pub(crate) enum Out {
    /// A sealed frame to deliver; the writer records it as in flight.
    Frame(Frame),
    /// A control message from the relay.
    Control(Msg),
}

/// One frame in flight to a connection.
#[derive(Debug)]
pub(crate) struct Held {
    /// The frame, when it is not on disk (so it can be queued if the connection drops).
    pub frame: Option<Frame>,
    /// Its row in the queue, when it came from there (deleted once acked).
    pub rowid: Option<i64>,
    /// Bytes on the wire.
    pub len: usize,
    /// Order of sending, to queue unacknowledged frames back in order.
    pub order: u64,
}

/// The frames in flight to one connection, by (source, sequence number), and whether the
/// disk queue may hold frames for it that were not sent yet.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    map: HashMap<(Address, u64), Held>,
    bytes: usize,
    order: u64,
    /// The disk queue may hold frames for this endpoint not sent yet: new frames go to disk
    /// behind them (keeping their order) until the writer has caught up.
    pub backlog: bool,
    /// Frames on their way to the disk queue (handed to the database task, not committed)
    /// because they could not go live: the writer is not caught up while there are any.
    pub spooling: u32,
}

impl InFlight {
    /// Records a frame as sent.
    pub fn insert(&mut self, key: (Address, u64), mut held: Held) {
        self.order += 1;
        held.order = self.order;
        self.bytes += held.len;
        if let Some(old) = self.map.insert(key, held) {
            self.bytes = self.bytes.saturating_sub(old.len);
            // A repeat of a frame that came from disk: keep the row so the ack deletes it.
            if let (Some(rowid), Some(new)) = (old.rowid, self.map.get_mut(&key)) {
                new.rowid = new.rowid.or(Some(rowid));
            }
        }
    }

    /// Takes the frame the peer acked.
    pub fn remove(&mut self, key: &(Address, u64)) -> Option<Held> {
        let held = self.map.remove(key)?;
        self.bytes = self.bytes.saturating_sub(held.len);
        Some(held)
    }

    /// How many more frames may be sent before the window is full.
    pub fn room(&self) -> usize {
        if self.bytes >= WINDOW_BYTES {
            0
        } else {
            WINDOW_FRAMES.saturating_sub(self.map.len())
        }
    }

    /// Everything in flight, oldest first.
    pub fn take_all(&mut self) -> Vec<Held> {
        let mut all: Vec<Held> = std::mem::take(&mut self.map).into_values().collect();
        self.bytes = 0;
        all.sort_by_key(|h| h.order);
        all
    }
}

/// The shared handle of one logged-in connection.
#[derive(Debug)]
pub(crate) struct Conn {
    /// Unique per relay run, to tell a replaced connection from its successor.
    pub id: u64,
    /// The endpoint's address (its PIN or SRP id).
    pub addr: Address,
    /// The peer's socket address.
    pub peer: SocketAddr,
    /// To the connection's writer.
    pub tx: mpsc::Sender<Out>,
    /// Wakes the writer to send what waits on disk for this endpoint.
    pub kick: Notify,
    /// Frames sent and not yet acked, and the backlog state (one lock for both, so a decision
    /// to send live or to disk sees a consistent window and backlog).
    pub in_flight: Mutex<InFlight>,
    /// Cancelled to close the connection.
    pub closing: CancellationToken,
    /// The refusal to send when closing, if any.
    farewell: Mutex<Option<schema::Refused>>,
    /// An outstanding duplicate-SRP probe: its nonce and who waits for the answer.
    probe: Mutex<Option<(u64, oneshot::Sender<()>)>>,
    /// When the login completed.
    pub since: Instant,
}

impl Conn {
    /// A handle for a new connection, with its writer's channel.
    pub fn new(
        shared: &Shared,
        addr: Address,
        peer: SocketAddr,
    ) -> (Arc<Conn>, mpsc::Receiver<Out>) {
        let (tx, rx) = mpsc::channel(CONN_CHANNEL);
        let conn = Conn {
            id: shared.next_conn_id.fetch_add(1, Ordering::Relaxed),
            addr,
            peer,
            tx,
            kick: Notify::new(),
            // Until the first drain has looked at the disk queue.
            in_flight: Mutex::new(InFlight {
                backlog: true,
                ..InFlight::default()
            }),
            closing: shared.shutdown.child_token(),
            farewell: Mutex::new(None),
            probe: Mutex::new(None),
            since: Instant::now(),
        };
        (Arc::new(conn), rx)
    }

    /// Closes the connection, sending `refusal` first if given (the first one given wins).
    pub fn close(&self, refusal: Option<schema::Refused>) {
        if let Some(r) = refusal {
            let mut f = lock(&self.farewell);
            if f.is_none() {
                *f = Some(r);
            }
        }
        self.closing.cancel();
    }

    /// The refusal to send on closing.
    pub fn farewell(&self) -> Option<schema::Refused> {
        lock(&self.farewell).clone()
    }

    /// Sends a keepalive with `nonce` and waits up to `wait` for its answer.
    pub async fn probe(&self, nonce: u64, wait: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        *lock(&self.probe) = Some((nonce, tx));
        let deadline = tokio::time::Instant::now() + wait;
        let ka = Out::Control(Msg::Keepalive(schema::Keepalive {
            nonce,
            reply: false,
        }));
        let alive = match tokio::time::timeout_at(deadline, self.tx.send(ka)).await {
            Ok(Ok(())) => matches!(tokio::time::timeout_at(deadline, rx).await, Ok(Ok(()))),
            _ => false,
        };
        lock(&self.probe).take();
        alive
    }

    /// The peer answered a keepalive with `nonce`.
    pub fn answer_probe(&self, nonce: u64) {
        let mut p = lock(&self.probe);
        if matches!(&*p, Some((n, _)) if *n == nonce)
            && let Some((_, tx)) = p.take()
        {
            let _ = tx.send(());
        }
    }

    /// Forgets an outstanding probe (the connection is gone: the prober sees no answer).
    pub fn drop_probe(&self) {
        lock(&self.probe).take();
    }
}

/// One shard of the PIN routing table.
type PinShard = Mutex<HashMap<Pin, Arc<Conn>>>;

/// Who is connected: PIN → connection, SRP id → connection.
#[derive(Debug)]
pub(crate) struct Routes {
    devices: Box<[PinShard]>,
    servers: Mutex<HashMap<SrpId, Arc<Conn>>>,
}

impl Routes {
    fn new() -> Routes {
        Routes {
            devices: (0..PIN_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            servers: Mutex::new(HashMap::new()),
        }
    }

    fn shard(&self, pin: Pin) -> &PinShard {
        // A PIN is a hash of a key already: its low bits spread well.
        &self.devices[pin.0 as usize % PIN_SHARDS]
    }

    /// The connection of `addr`, if any.
    pub fn get(&self, addr: Address) -> Option<Arc<Conn>> {
        match addr {
            Address::Pin(p) => lock(self.shard(p)).get(&p).cloned(),
            Address::Srp(s) => lock(&self.servers).get(&s).cloned(),
            Address::Relay => None,
        }
    }

    /// Makes `conn` the route to its address; returns the connection it replaces.
    pub fn insert(&self, conn: Arc<Conn>) -> Option<Arc<Conn>> {
        match conn.addr {
            Address::Pin(p) => lock(self.shard(p)).insert(p, conn),
            Address::Srp(s) => lock(&self.servers).insert(s, conn),
            Address::Relay => None,
        }
    }

    /// Removes the route to `conn`'s address if it is still `conn` (not a successor).
    pub fn remove(&self, conn: &Conn) {
        match conn.addr {
            Address::Pin(p) => {
                let mut m = lock(self.shard(p));
                if m.get(&p).is_some_and(|c| c.id == conn.id) {
                    m.remove(&p);
                }
            }
            Address::Srp(s) => {
                let mut m = lock(&self.servers);
                if m.get(&s).is_some_and(|c| c.id == conn.id) {
                    m.remove(&s);
                }
            }
            Address::Relay => {}
        }
    }

    /// Every connected server.
    pub fn servers(&self) -> Vec<Arc<Conn>> {
        lock(&self.servers).values().cloned().collect()
    }
}

/// State shared by all of a relay's tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    pub cfg: RelayConfig,
    pub pool: SqlitePool,
    pub routes: Routes,
    /// To the database task.
    pub db: mpsc::Sender<DbOp>,
    pub shutdown: CancellationToken,
    next_conn_id: AtomicU64,
    srp_locks: Mutex<HashMap<SrpId, Arc<tokio::sync::Mutex<()>>>>,
    rng: ring::rand::SystemRandom,
    /// Mails devices' activation requests.
    pub mail: Arc<crate::mail::MailGateway>,
}

impl Shared {
    pub fn new(
        cfg: RelayConfig,
        pool: SqlitePool,
        db: mpsc::Sender<DbOp>,
        mail: Arc<crate::mail::MailGateway>,
    ) -> Shared {
        Shared {
            cfg,
            pool,
            routes: Routes::new(),
            db,
            shutdown: CancellationToken::new(),
            next_conn_id: AtomicU64::new(1),
            srp_locks: Mutex::new(HashMap::new()),
            rng: ring::rand::SystemRandom::new(),
            mail,
        }
    }

    /// Fills `buf` with random bytes.
    ///
    /// # Errors
    /// When the operating system's generator fails.
    pub fn random(&self, buf: &mut [u8]) -> Result<(), ring::error::Unspecified> {
        ring::rand::SecureRandom::fill(&self.rng, buf)
    }

    /// A random u64 (a keepalive nonce); 0 if the generator fails.
    pub fn random_u64(&self) -> u64 {
        let mut b = [0u8; 8];
        let _ = self.random(&mut b);
        u64::from_be_bytes(b)
    }

    /// The lock that serialises logins of one SRP id (so two at once cannot both win).
    pub fn srp_lock(&self, srp: SrpId) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.srp_locks).entry(srp).or_default().clone()
    }

    /// Hands a frame to the database task to be queued on disk. `bypassed` is the destination's
    /// connection when the frame could not go to it live (its `spooling` count was raised).
    pub async fn spool(&self, frame: Frame, bypassed: Option<Arc<Conn>>) {
        if self
            .db
            .send(DbOp::Enqueue { frame, bypassed })
            .await
            .is_err()
        {
            tracing::error!("a frame could not be queued: the relay's database task has stopped");
        }
    }

    /// Tells server `srp` what became of a frame: live if it is connected and keeps up,
    /// otherwise through `pending_reports`.
    pub async fn report(&self, srp: SrpId, report: schema::DeliveryReport) {
        if let Err(report) = self.try_report(srp, report)
            && self.db.send(DbOp::Report { srp, report }).await.is_err()
        {
            tracing::error!(%srp, "a delivery report was lost: the relay's database task has stopped");
        }
    }

    /// Sends a report live if possible; gives it back otherwise.
    pub fn try_report(
        &self,
        srp: SrpId,
        report: schema::DeliveryReport,
    ) -> Result<(), schema::DeliveryReport> {
        let Some(conn) = self.routes.get(Address::Srp(srp)) else {
            return Err(report);
        };
        match conn.tx.try_send(Out::Control(Msg::DeliveryReport(report))) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(Out::Control(Msg::DeliveryReport(r))))
            | Err(TrySendError::Closed(Out::Control(Msg::DeliveryReport(r)))) => Err(r),
            // Not reachable: what was sent is what comes back.
            Err(_) => Ok(()),
        }
    }
}

/// A delivery report about frame `seq` that server sent to `pin`.
pub(crate) fn report(
    pin: Pin,
    seq: u64,
    status: schema::DeliveryStatus,
    detail: String,
) -> schema::DeliveryReport {
    schema::DeliveryReport {
        pin: pin.0,
        seq,
        status: status as i32,
        at_ms: db::now_ms(),
        detail,
    }
}

/// Routes a SEALED frame whose source the caller has checked: live to its destination when
/// that is connected, has room in its window and channel, and no backlog on disk; to the disk
/// queue otherwise.
pub(crate) async fn route(shared: &Shared, frame: Frame) {
    let dst = frame.header.dst;
    let Some(conn) = shared.routes.get(dst) else {
        tracing::trace!(dst = %dst, seq = frame.header.seq, "to the disk queue (not connected)");
        shared.spool(frame, None).await;
        return;
    };
    let frame = {
        let mut state = lock(&conn.in_flight);
        let frame = if !state.backlog && state.room() > 0 {
            // `try_send` never waits, so it may run under the lock.
            match conn.tx.try_send(Out::Frame(frame)) {
                Ok(()) => return,
                Err(TrySendError::Full(Out::Frame(f)) | TrySendError::Closed(Out::Frame(f))) => f,
                // Not reachable: what was sent is what comes back.
                Err(_) => return,
            }
        } else {
            frame
        };
        state.backlog = true;
        state.spooling += 1;
        frame
    };
    tracing::trace!(dst = %dst, seq = frame.header.seq, "to the disk queue (behind)");
    shared.spool(frame, Some(conn)).await;
}

/// Every `expiry_sweep`: drops expired frames (reporting EXPIRED) and closes server
/// connections whose SRP id an operator disabled or removed meanwhile.
pub(crate) async fn sweep_loop(shared: Arc<Shared>) {
    let period = shared.cfg.expiry_sweep.max(Duration::from_millis(10));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        if shared.db.send(DbOp::Expire).await.is_err() {
            break;
        }
        for conn in shared.routes.servers() {
            let Address::Srp(srp) = conn.addr else {
                continue;
            };
            let refusal = match crate::srp::state_of(&shared.pool, srp).await {
                Ok(None) => Some((
                    schema::RefusalReason::SrpUnknown,
                    format!("SRP id {srp} was removed from this relay by its operator"),
                )),
                Ok(Some(crate::SrpState::Disabled)) => Some((
                    schema::RefusalReason::SrpDisabled,
                    format!("SRP id {srp} was disabled by the relay's operator"),
                )),
                Ok(Some(crate::SrpState::Conflict)) => Some((
                    schema::RefusalReason::SrpConflict,
                    crate::conn::conflict_detail(srp),
                )),
                Ok(Some(crate::SrpState::Enabled)) => None,
                Err(e) => {
                    tracing::warn!(%srp, error = %e, "could not check the state of an SRP id");
                    None
                }
            };
            if let Some((reason, detail)) = refusal {
                tracing::warn!(%srp, peer = %conn.peer, "closing: {detail}");
                conn.close(Some(schema::Refused {
                    reason: reason as i32,
                    detail,
                }));
            }
        }
    }
}
