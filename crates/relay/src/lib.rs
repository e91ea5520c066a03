//! The Bramble relay: what the BES seeds call the BlackBerry Infrastructure.
//!
//! Devices connect to it (TLS 1.3, port 4101 by default) and are addressed by their **PIN**;
//! enterprise servers connect out to it (TLS 1.3, port 3101 by default) and are addressed by
//! their **SRP id**, authenticated by an SRP key. The relay routes SEALED frames between them
//! by the frame's routing header, queues them on disk while a destination is away, tells the
//! sending server what became of each frame it sent to a device, and speaks `Control`
//! messages (schema `bramble.v1.Control`) with each endpoint.
//!
//! Owns: its listeners and connections, the routing table, the frames in flight, and its own
//! SQLite database `relay.db` (SRP ids and key hashes, the PIN ↔ identity-key bindings, the
//! queue of frames waiting for a destination, delivery reports waiting for a server).
//!
//! Must not touch: a device's keys (it holds none and never could), the body of a SEALED
//! frame (never opened, decoded or logged: it is stored only as the opaque encoded frame),
//! the enterprise server's configuration database (`bramble-store`), or anything of mail,
//! organizer data or policy. The `bramble relay` command line is written on top of this API.
//!
//! # The protocol as the relay speaks it
//!
//! 1. **Login.** After TLS the relay sends `Challenge{nonce, protocol_version: 1,
//!    relay_name}` from [`Address::Relay`](bramble_proto::Address). A device answers
//!    `DeviceHello` (its proof covers the nonce and the TLS channel binding), a server
//!    `ServerHello{srp_id, srp_key}`; the header of a hello is not checked. On success the
//!    relay sends `Welcome{queued, max_frame_len}` and then what was queued for the endpoint
//!    (for a server, first the delivery reports that waited for it, then frames), oldest
//!    first. Otherwise it sends `Refused{reason, detail}` and closes. The login must end
//!    within 10 s.
//! 2. **Routing.** After login every frame's source must be the connection's own address.
//!    SEALED frames go device → SRP id or server → PIN, with a sequence number ≥ 1; the
//!    relay forwards them unread. CONTROL frames after login: `Ack`, `Keepalive` (answered
//!    with `reply = true` and the same nonce); any other message is ignored.
//! 3. **Acks.** A frame stays in the relay's hands until its destination acks it with
//!    `Ack{frames: [FrameRef]}`. The rule: a device acks a server's frame with
//!    `FrameRef{srp_id: <the sending server>, seq, pin: 0}`, a server acks a device's frame
//!    with `FrameRef{pin: <the sending device>, seq, srp_id: 0}` — in both cases the frame's
//!    routing-header source and sequence number. The field that does not apply is ignored.
//! 4. **Queue and reports.** A frame whose destination is not connected, falls behind (its
//!    channel is full, or too much is unacknowledged), or is lost in flight when the
//!    destination disconnects or the relay shuts down, is written to `relay.db` first.
//!    For each frame a server sends to a device the server gets `DeliveryReport`s: QUEUED
//!    when it went to disk while the device was away, DELIVERED when the device acked it,
//!    EXPIRED when it waited longer than [`RelayConfig::queue_expiry`], QUEUE_FULL when the
//!    device's queue was full and it was dropped. Reports for a server that is away wait in
//!    `relay.db` (as long as frames do). Device → server frames are queued the same way
//!    (only for SRP ids registered here) but no one is told about them.
//! 5. **Two servers on one SRP id** (seed 003). A `ServerHello` for an SRP id that already has
//!    a connection: the relay sends that connection a `Keepalive` and waits
//!    [`RelayConfig::failover_probe`]. An answer means two live servers: both are refused
//!    with SRP_CONFLICT and the id is put in the `conflict` state until an operator runs
//!    [`srp_enable`]. Silence means the old server is gone (a failover): it is closed, its
//!    unacknowledged frames go back to the queue, and the new login is accepted. A device
//!    that logs in while its PIN has a connection simply replaces it.
//! 6. **Hostile input.** A malformed or oversized frame, a control message that does not
//!    decode, a spoofed source or a message out of order gets `Refused{PROTOCOL, detail}`
//!    (when the stream still allows it) and closes that one connection.
//!
//! Keepalive: a connection silent for [`RelayConfig::keepalive`] gets a `Keepalive`; silent
//! for as long again, it is closed. A write that takes longer than that closes it too.

mod config;
mod conn;
mod db;
mod error;
pub mod mail;
mod route;
mod srp;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

pub use bramble_net::Fingerprint;
pub use config::RelayConfig;
pub use error::RelayError;
pub use srp::{
    BadSrpState, SrpEntry, SrpState, srp_add, srp_disable, srp_enable, srp_list, srp_remove,
};

use crate::conn::Role;
use crate::db::DbOp;
use crate::route::Shared;

/// Starts a relay: opens (or creates) `relay.db`, loads or makes the TLS certificate, binds
/// both listeners, spawns its tasks and returns at once.
///
/// # Errors
/// A [`RelayError`] when the database, the certificate or a port cannot be used; nothing is
/// left running then.
pub async fn start(cfg: RelayConfig) -> Result<RelayHandle, RelayError> {
    let pool = db::open(&cfg.data_dir, db::RELAY_POOL_SIZE).await?;
    match start_with_pool(cfg, pool.clone()).await {
        Ok(h) => Ok(h),
        Err(e) => {
            pool.close().await;
            Err(e)
        }
    }
}

async fn start_with_pool(
    cfg: RelayConfig,
    pool: sqlx::SqlitePool,
) -> Result<RelayHandle, RelayError> {
    let identity = bramble_net::TlsIdentity::load_or_create(
        &cfg.cert_path(),
        &cfg.key_path(),
        &cfg.cert_names,
    )?;
    let acceptor = tokio_rustls::TlsAcceptor::from(identity.server_config()?);
    let server_listener =
        bramble_net::bind(cfg.server_listen).map_err(|source| RelayError::Bind {
            what: "enterprise servers",
            addr: cfg.server_listen,
            source,
        })?;
    let device_listener =
        bramble_net::bind(cfg.device_listen).map_err(|source| RelayError::Bind {
            what: "devices",
            addr: cfg.device_listen,
            source,
        })?;
    let local = |l: &tokio::net::TcpListener, what, addr| {
        l.local_addr()
            .map_err(|source| RelayError::Bind { what, addr, source })
    };
    let server_addr = local(&server_listener, "enterprise servers", cfg.server_listen)?;
    let device_addr = local(&device_listener, "devices", cfg.device_listen)?;

    let (db_tx, db_rx) = mpsc::channel(db::DB_CHANNEL);
    let mail =
        Arc::new(mail::MailGateway::new(&cfg.mail).map_err(|e| RelayError::Config(e.to_string()))?);
    let shared = Arc::new(Shared::new(cfg, pool, db_tx, mail));
    let db_task = tokio::spawn(db::run(shared.clone(), db_rx));
    let tracker = TaskTracker::new();
    tracker.spawn(conn::accept_loop(
        shared.clone(),
        server_listener,
        Role::Server,
        acceptor.clone(),
        tracker.clone(),
    ));
    tracker.spawn(conn::accept_loop(
        shared.clone(),
        device_listener,
        Role::Device,
        acceptor,
        tracker.clone(),
    ));
    let sweep = tokio::spawn(route::sweep_loop(shared.clone()));
    tracing::info!(
        servers = %server_addr,
        devices = %device_addr,
        fingerprint = %identity.fingerprint,
        "relay {:?} started",
        shared.cfg.name
    );
    Ok(RelayHandle {
        shared,
        server_addr,
        device_addr,
        fingerprint: identity.fingerprint,
        cert_created: identity.created,
        tracker,
        db_task,
        sweep,
    })
}

/// A running relay. Dropping it leaves the relay running until the tokio runtime ends; call
/// [`RelayHandle::shutdown`] to stop it cleanly.
pub struct RelayHandle {
    shared: Arc<Shared>,
    server_addr: SocketAddr,
    device_addr: SocketAddr,
    fingerprint: Fingerprint,
    cert_created: bool,
    tracker: TaskTracker,
    db_task: JoinHandle<()>,
    sweep: JoinHandle<()>,
}

impl std::fmt::Debug for RelayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayHandle")
            .field("name", &self.shared.cfg.name)
            .field("server_addr", &self.server_addr)
            .field("device_addr", &self.device_addr)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl RelayHandle {
    /// Where enterprise servers connect (the bound address: a port asked as 0 is filled in).
    pub fn server_addr(&self) -> SocketAddr {
        self.server_addr
    }

    /// Where devices connect (the bound address).
    pub fn device_addr(&self) -> SocketAddr {
        self.device_addr
    }

    /// The SHA-256 fingerprint of the relay's certificate, which devices and servers pin.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Whether the certificate was made at this start (so the fingerprint is new).
    pub fn cert_created(&self) -> bool {
        self.cert_created
    }

    /// The SRP ids of this relay, as [`srp_list`], with `connected` filled in.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn srp_list(&self) -> Result<Vec<SrpEntry>, RelayError> {
        let mut list = srp::list_on(&self.shared.pool).await?;
        for e in &mut list {
            e.connected = self
                .shared
                .routes
                .get(bramble_proto::Address::Srp(e.id))
                .is_some();
        }
        Ok(list)
    }

    /// Stops the relay: stops accepting, sends `Refused{SHUTDOWN}` to every connection and
    /// closes it, writes the frames that were in flight to the queue, and closes `relay.db`.
    /// When it returns, the same data directory and ports can be used by a new [`start`].
    pub async fn shutdown(self) {
        tracing::info!("relay shutting down");
        self.shared.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        let _ = self.sweep.await;
        let (tx, rx) = oneshot::channel();
        if self.shared.db.send(DbOp::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
        let _ = self.db_task.await;
        self.shared.pool.close().await;
        tracing::info!("relay stopped");
    }
}
