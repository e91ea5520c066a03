//! The Bramble enterprise server (`bramble serve`): the components of the seeds' BES 5
//! architecture, each a module named after it.
//!
//! - [`router`]: keeps the TLS connection to the relay under the server's SRP id, with
//!   reconnection (back-off and jitter); carries frames both ways.
//! - [`dispatcher`]: seals and opens every payload with the device's key, and hands what it
//!   opened to the component it is for.
//! - [`sync`]: the synchronization service (so far its CalDAV/CardDAV client, `sync::dav`).
//! - [`admin`]: the administration service's REST API (bearer-token auth); `bramble admin`
//!   is its client.
//!
//! Owns: the enterprise side of every device's session. Must not touch: the relay's
//! internals (it is reached only over the wire), SQL (only `bramble-store`'s API), the
//! device's files.

pub mod admin;
pub mod config;
pub mod directory;
pub mod dispatcher;
pub mod messaging;
pub mod policy;
pub mod router;
pub mod secret_box;
pub mod sync;

use std::net::SocketAddr;
use std::sync::Arc;

use bramble_proto::SrpId;
use bramble_store::Store;
use tokio::sync::broadcast;

pub use config::{AdminConfig, ServerConfig, UplinkConfig};
pub use dispatcher::{DispatchError, Dispatcher};
pub use router::{LinkState, Router};

/// Something that happened in the server, for tests, the demo and (later) monitoring.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// The router logged in at the relay.
    RelayUp,
    /// The router lost the relay (and will reconnect unless the reason is permanent).
    RelayDown {
        /// Why, in an operator's words.
        reason: String,
    },
    /// A device's frame was opened.
    Received {
        /// The device.
        pin: bramble_proto::Pin,
        /// Its sequence number.
        seq: u64,
        /// The body's kind ("ping", "pong", "error", "unknown").
        kind: &'static str,
    },
    /// A device's frame could not be opened.
    Rejected {
        /// The device.
        pin: bramble_proto::Pin,
        /// Its sequence number.
        seq: u64,
        /// Why.
        reason: String,
    },
    /// A user's activation moved to a new status (BES text).
    Activation {
        /// The user.
        email: String,
        /// "Activating", … "Completed", "Failed".
        status: String,
    },
    /// A message from a user's mailbox was sent to the user's device.
    MailForwarded {
        /// The user.
        email: String,
        /// Its RefID.
        ref_id: i64,
        /// A resend (no confirmation came in time, or the relay never reported it).
        resent: bool,
    },
    /// The device confirmed it holds these messages.
    MailConfirmed {
        /// The user.
        email: String,
        /// The RefIDs.
        ref_ids: Vec<u64>,
    },
    /// A message the device sent was stored in the outbox.
    MailSubmitted {
        /// The user.
        email: String,
        /// The device's id for it.
        client_id: u64,
        /// Whether it was new (not a repeat of one already stored).
        new: bool,
    },
    /// A device answered an IT policy: applied or not, and its compliance.
    PolicyReport {
        /// The user.
        email: String,
        /// The device.
        pin: bramble_proto::Pin,
        /// The policy's version.
        version: u64,
        /// Whether it was applied.
        applied: bool,
        /// What the device does not comply with.
        problems: Vec<String>,
    },
    /// An IT admin command moved to a new state (queued, sent, pending, done, failed,
    /// cancelled).
    Command {
        /// The command's number.
        id: i64,
        /// The user.
        email: String,
        /// Its new state.
        state: String,
    },
    /// A software deployment job moved to a new state.
    SoftwareJob {
        /// The job's number.
        id: i64,
        /// The user.
        email: String,
        /// Its new state (sent, done, failed).
        state: String,
    },
    /// The relay reported what became of a frame the server sent.
    Delivery {
        /// The device.
        pin: bramble_proto::Pin,
        /// The frame.
        seq: u64,
        /// "queued", "delivered", "expired", "queue full".
        status: &'static str,
    },
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration database failed.
    #[error(transparent)]
    Store(#[from] bramble_store::StoreError),
    /// The administration service could not listen.
    #[error("the administration service cannot listen on {addr}: {source}")]
    AdminListen {
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A file in the data directory could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration is wrong.
    #[error("configuration: {0}")]
    Config(String),
}

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    /// The dispatcher, to send to devices.
    pub dispatcher: Dispatcher,
    /// The router, to see the link's state.
    pub router: Router,
    admin_addr: SocketAddr,
    events: broadcast::Sender<ServerEvent>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    shards: Vec<tokio::task::JoinHandle<()>>,
    watchers: Option<Arc<messaging::mailbox::Watchers>>,
    push_addr: Option<SocketAddr>,
    store: Store,
    srp: SrpId,
}

impl ServerHandle {
    /// Where the administration API listens.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Where the mail server's push hook listens, when configured.
    pub fn push_addr(&self) -> Option<SocketAddr> {
        self.push_addr
    }

    /// How many mailboxes the messaging agent watches, and how many of them are up to date
    /// and waiting for new mail (IMAP IDLE, or inotify); `(0, 0)` without a mail store.
    pub fn mailboxes(&self) -> (usize, usize) {
        self.watchers.as_ref().map_or((0, 0), |w| w.counts())
    }

    /// The addresses whose mailboxes the messaging agent watches, in no order.
    pub fn watched_mailboxes(&self) -> Vec<String> {
        self.watchers
            .as_ref()
            .map_or_else(Vec::new, |w| w.watched())
    }

    /// The server's SRP id.
    pub fn srp_id(&self) -> SrpId {
        self.srp
    }

    /// The configuration database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Events from now on.
    pub fn events(&self) -> broadcast::Receiver<ServerEvent> {
        self.events.subscribe()
    }

    /// Stops every component and closes the database: the relay link first (nothing new
    /// comes in), then the administration service, then the dispatcher's shards finish what
    /// they hold.
    pub async fn shutdown(self) {
        self.router.shutdown().await;
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        if let Some(w) = self.watchers.and_then(|w| Arc::try_unwrap(w).ok()) {
            w.shutdown().await;
        }
        drop(self.dispatcher);
        for shard in self.shards {
            if tokio::time::timeout(std::time::Duration::from_secs(5), shard)
                .await
                .is_err()
            {
                tracing::warn!("a dispatcher shard did not finish within 5 s");
            }
        }
        self.store.close().await;
    }
}

/// The mail store the messaging agent watches, from `[server.mail]`.
///
/// # Errors
/// [`ServerError::Config`] naming the setting at fault.
pub fn mailbox_config(
    cfg: &ServerConfig,
    per_user: Option<messaging::mailbox::PasswordLookup>,
) -> Result<messaging::mailbox::MailboxConfig, ServerError> {
    use messaging::mailbox::{ImapAuth, ImapConfig, MailboxConfig, MailboxSource, MaildirConfig};
    let m = &cfg.mail;
    let Some(addr) = &m.imap else {
        return Ok(MailboxConfig::new(MailboxSource::Maildir(
            // Absolute: inotify reports absolute paths, and a relative root (the default
            // `bramble-data/mail`) would not match them, leaving new mail to the slow rescan.
            MaildirConfig::new({
                let root = m.maildir_root(&cfg.data_dir);
                std::path::absolute(&root).unwrap_or(root)
            }),
        )));
    };
    match m.imap_tls.as_deref() {
        None | Some("none") => {}
        Some(other) => {
            return Err(ServerError::Config(format!(
                "[server.mail] imap_tls = {other:?}: only \"none\" (a loopback or otherwise trusted link) is supported so far"
            )));
        }
    }
    if m.per_user {
        let lookup = per_user.unwrap_or_else(|| messaging::mailbox::PasswordLookup::new(|_| None));
        return Ok(MailboxConfig::new(MailboxSource::Imap(ImapConfig::new(
            addr.clone(),
            ImapAuth::PerUser {
                password_for: lookup,
            },
        ))));
    }
    let user = m.service_user.clone().ok_or_else(|| {
        ServerError::Config(
            "[server.mail] imap needs service_user (the account that reaches every mailbox)".into(),
        )
    })?;
    let password = match (&m.service_password, &m.service_password_file) {
        (Some(p), _) => p.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|source| ServerError::File {
                path: f.clone(),
                source,
            })?
            .trim()
            .to_owned(),
        (None, None) => {
            return Err(ServerError::Config(
                "[server.mail] imap needs service_password or service_password_file (or BRAMBLE_SERVER__MAIL__SERVICE_PASSWORD)".into(),
            ));
        }
    };
    Ok(MailboxConfig::new(MailboxSource::Imap(ImapConfig::new(
        addr.clone(),
        ImapAuth::service_account(user, password),
    ))))
}

/// Who the embedded default's local delivery may deliver to: the users of this server, whose
/// Maildirs the mailbox watchers make when a user is added.
fn local_users(cfg: &ServerConfig) -> messaging::mail::transport::LocalUsers {
    let root = cfg.mail.maildir_root(&cfg.data_dir);
    let root = std::path::absolute(&root).unwrap_or(root);
    Arc::new(move |email: &str| {
        std::fs::symlink_metadata(root.join(email).join("Maildir")).is_ok_and(|m| m.is_dir())
    })
}

/// Starts the server's components on an open store, with the SRP identity it holds.
///
/// # Errors
/// A [`ServerError`] when a component cannot start.
pub async fn start(cfg: &ServerConfig, store: Store) -> Result<ServerHandle, ServerError> {
    let identity = store.server_identity().await?.ok_or_else(|| {
        ServerError::Config(
            "this server has no SRP identity yet: give [uplink] srp_id and srp_key".into(),
        )
    })?;
    let srp = SrpId::new(identity.srp_id).ok_or_else(|| {
        ServerError::Config(format!("stored SRP id {} is out of range", identity.srp_id))
    })?;
    let fingerprint = match identity.relay_fingerprint.as_deref() {
        Some(f) => Some(
            f.parse()
                .map_err(|e| ServerError::Config(format!("relay fingerprint: {e}")))?,
        ),
        None => None,
    };
    let (events, _) = broadcast::channel(1024);
    let (router, inbound) = Router::spawn(
        router::RouterConfig {
            relay_addr: identity.relay_addr.clone(),
            fingerprint,
            srp,
            srp_key: identity.srp_key.clone(),
            backoff_min: cfg.uplink_backoff_min,
            backoff_max: cfg.uplink_backoff_max,
        },
        events.clone(),
        Some(store.clone()),
    );
    let (act_tx, act_rx) = tokio::sync::mpsc::channel(1024);
    let (mail_req_tx, mail_req_rx) = tokio::sync::mpsc::channel(1024);
    let (policy_handle, policy_rx) = policy::PolicyHandle::channel();
    let (sync_handle, sync_rx) = sync::SyncHandle::channel();
    let outbox = Arc::new(tokio::sync::Notify::new());
    let changes = Arc::new(tokio::sync::Notify::new());
    let (dispatcher, shards) = Dispatcher::spawn(
        store.clone(),
        router.clone(),
        srp,
        events.clone(),
        &cfg.dispatcher,
        dispatcher::Routes {
            activation: act_tx.clone(),
            mail: mail_req_tx,
            outbox: outbox.clone(),
            changes: changes.clone(),
            policy: policy_handle.clone(),
            sync: sync_handle.clone(),
        },
    );
    let pump = dispatcher.clone().pump(inbound);

    // The messaging agent: the activation handshake, fed by the mailbox watchers.
    let setup = store
        .secret_or_insert(
            messaging::activation::OPAQUE_SETUP,
            bramble_proto::pake::new_server_setup,
        )
        .await?;
    let domain = Arc::new(policy::domain_key(&store).await?);
    policy::seed_presets(&store).await?;
    let activation = messaging::activation::ActivationService::new(
        store.clone(),
        router.clone(),
        dispatcher.clone(),
        srp,
        setup,
        domain.clone(),
        events.clone(),
        cfg.activation.clone(),
    )
    .with_policy(policy_handle.clone())
    .with_sync(cfg.sync.clone());
    let activation = tokio::spawn(activation.run(act_rx));
    let (mail_tx, mut mail_rx) = tokio::sync::mpsc::channel(256);
    let mut tasks_extra = Vec::new();
    // The policy service: IT policy updates, IT admin commands, software deployment.
    let policy_service = policy::PolicyService::new(
        store.clone(),
        dispatcher.clone(),
        domain,
        srp,
        cfg.policy.clone(),
        events.clone(),
    );
    tasks_extra.push(tokio::spawn(policy_service.run(policy_rx)));
    let credentials = Arc::new(messaging::credentials::Credentials::load(&store).await?);
    let mailboxes = mailbox_config(cfg, Some(credentials.lookup()))?;
    cfg.sync.check().map_err(ServerError::Config)?;
    // The synchronization service: organizer data against CalDAV/CardDAV, wireless backup.
    let sync_service = sync::SyncService::new(
        store.clone(),
        dispatcher.clone(),
        cfg.sync.clone(),
        Some(credentials.lookup()),
        events.clone(),
    )
    .await?;
    tasks_extra.push(tokio::spawn(sync_service.run(sync_rx)));
    let agent = Arc::new(messaging::mail::agent::MailAgent::new(
        store.clone(),
        dispatcher.clone(),
        events.clone(),
        cfg.mail.agent_config(),
        messaging::mailbox::access::MailAccess::new(&mailboxes.source),
    ));
    let transport = messaging::mail::transport::transport(cfg, local_users(cfg)).map_err(|e| {
        tracing::error!("mail from devices cannot be sent: {e}");
        format!("This server cannot send mail yet ({e}). Ask your administrator.")
    });
    tasks_extra.push(tokio::spawn(agent.clone().run()));
    tasks_extra.push(tokio::spawn(agent.clone().serve_requests(mail_req_rx)));
    tasks_extra.push(tokio::spawn(agent.clone().run_changes(changes)));
    tasks_extra.push(tokio::spawn(
        agent.clone().run_outbox(Arc::new(transport), outbox),
    ));
    let watchers =
        Arc::new(messaging::mailbox::Watchers::new(mailboxes, mail_tx).with_sink(agent.clone()));
    let forward = tokio::spawn(async move {
        while let Some(mail) = mail_rx.recv().await {
            if act_tx
                .send(messaging::activation::Input::Mail(mail))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut push_addr = None;
    if let Some(addr) = cfg.mail.push_listen {
        let listener =
            bramble_net::bind(addr).map_err(|source| ServerError::AdminListen { addr, source })?;
        push_addr = listener.local_addr().ok();
        let app = messaging::push_hook::app(watchers.clone());
        tasks_extra.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("the mail push hook stopped: {e}");
            }
        }));
    }
    for user in store.list_users().await? {
        if let Err(e) = watchers.watch(&user.email) {
            tracing::warn!(user = %user.email, "cannot watch the mailbox: {e}");
        }
    }

    admin::access::seed(&store).await?;
    let directory = match &cfg.directory {
        Some(d) => Some(Arc::new(directory::DirectoryService::new(
            directory::Directory::new(d.clone()).map_err(ServerError::Config)?,
        ))),
        None => None,
    };
    let admin = Arc::new(
        admin::AdminState::new(
            store.clone(),
            admin::load_or_create_token(cfg)?,
            router.clone(),
            srp,
        )
        .with_watchers(watchers.clone())
        .with_credentials(credentials)
        .with_policy(policy_handle)
        .with_sync(sync_handle, cfg.sync.clone())
        .with_directory(directory.clone()),
    );
    if let Some(d) = directory {
        tasks_extra.push(tokio::spawn(d.run(admin.user_services())));
    }
    let listener =
        bramble_net::bind(cfg.admin.listen).map_err(|source| ServerError::AdminListen {
            addr: cfg.admin.listen,
            source,
        })?;
    let admin_addr = listener
        .local_addr()
        .map_err(|source| ServerError::AdminListen {
            addr: cfg.admin.listen,
            source,
        })?;
    admin::write_client_file(cfg, admin_addr, &admin.token)?;
    let app = admin::app(admin).into_make_service_with_connect_info::<SocketAddr>();
    let serve = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("administration service stopped: {e}");
        }
    });
    tracing::info!(%srp, admin = %admin_addr, relay = %identity.relay_addr, "enterprise server started");
    Ok(ServerHandle {
        dispatcher,
        router,
        admin_addr,
        events,
        tasks: [pump, serve, forward, activation]
            .into_iter()
            .chain(tasks_extra)
            .collect(),
        push_addr,
        watchers: Some(watchers),
        shards,
        store,
        srp,
    })
}
