//! A relay and an enterprise server for a benchmark, in this process, on loopback, in a
//! temporary directory: the relay started, an SRP id made for the server, the server's
//! identity written into its configuration database (SQLite), users added with an activation
//! password. The server itself is started by the benchmark (it may start several in turn).
//!
//! Owns: that setup, shared by `bench activation`, `bench push` and `bench mailboxes`. Must
//! not touch: the code it sets up (public APIs only), anything outside the directory and
//! loopback.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bramble_proto::pake;
use bramble_relay::{RelayConfig, RelayHandle};
use bramble_server::ServerConfig;
use bramble_store::{ServerIdentity, Store};

use crate::{BenchError, progress};

/// Where activation (and push) mail goes between the relay, the server and the users.
#[derive(Debug, Clone)]
pub enum MailPath {
    /// The embedded Maildir store in the directory (no mail server).
    Maildir,
    /// A real mail server: the relay sends over SMTP, the server watches IMAP as the service
    /// account and listens for the mail server's push hook on loopback.
    Dovecot {
        /// The SMTP server's address.
        smtp: String,
        /// The IMAP server's address.
        imap: String,
        /// The service account (a Dovecot master user) and its password.
        service: (String, String),
    },
}

impl MailPath {
    /// The mail stack's Postfix and Dovecot, with its service account.
    pub fn dovecot(stack: &bramble_testkit::mail::MailStack) -> MailPath {
        let (user, password) = stack.service_account();
        MailPath::Dovecot {
            smtp: stack.smtp_addr().to_string(),
            imap: stack.imap_addr().to_string(),
            service: (user.to_owned(), password.to_owned()),
        }
    }
}

/// The relay, and the configuration a server of this site starts with.
#[derive(Debug)]
pub struct Site {
    /// The running relay.
    pub relay: RelayHandle,
    /// The server's configuration: its data directory, database and mail path.
    pub cfg: ServerConfig,
}

pub(crate) fn setup_err(what: &str) -> impl FnOnce(String) -> BenchError + '_ {
    move |e| BenchError::Setup(format!("{what}: {e}"))
}

/// 127.0.0.1, any port.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Starts the relay in `root/relay`, makes an SRP id for the server and writes the server's
/// identity into its database in `root/server`.
///
/// # Errors
/// When the relay or the database cannot be set up.
pub async fn start(root: &Path, mail: &MailPath) -> Result<Site, BenchError> {
    let mut rcfg = RelayConfig::with_data_dir(root.join("relay"));
    rcfg.server_listen = loopback();
    rcfg.device_listen = loopback();
    let mut cfg = ServerConfig::with_data_dir(root.join("server"));
    cfg.admin.listen = loopback();
    cfg.activation.step_timeout = Duration::from_secs(60);
    match mail {
        MailPath::Maildir => {
            rcfg.mail.maildir = Some(root.join("mail"));
            cfg.mail.maildir = Some(root.join("mail"));
        }
        MailPath::Dovecot {
            smtp,
            imap,
            service,
        } => {
            rcfg.mail.maildir = None;
            rcfg.mail.smtp = Some(smtp.clone());
            cfg.mail.maildir = None;
            cfg.mail.imap = Some(imap.clone());
            cfg.mail.smtp = Some(smtp.clone());
            cfg.mail.service_user = Some(service.0.clone());
            cfg.mail.service_password = Some(service.1.clone());
            cfg.mail.push_listen = Some(loopback());
        }
    }
    let relay = bramble_relay::start(rcfg)
        .await
        .map_err(|e| setup_err("the relay")(e.to_string()))?;
    let (srp, key) = bramble_relay::srp_add(&root.join("relay"), None)
        .await
        .map_err(|e| setup_err("an SRP id")(e.to_string()))?;
    let store = open_store(&cfg).await?;
    store
        .set_server_identity(&ServerIdentity {
            srp_id: srp.get(),
            srp_key: key,
            relay_addr: relay.server_addr().to_string(),
            relay_fingerprint: Some(relay.fingerprint().to_string()),
        })
        .await
        .map_err(|e| setup_err("the server identity")(e.to_string()))?;
    Ok(Site { relay, cfg })
}

/// Opens the server's configuration database.
///
/// # Errors
/// When it cannot be opened.
pub async fn open_store(cfg: &ServerConfig) -> Result<Store, BenchError> {
    Store::open(&cfg.database_url())
        .await
        .map_err(|e| setup_err("the configuration database")(e.to_string()))
}

/// Starts a server of `site` on a store of its own (a server's shutdown closes its store) and
/// waits until it is logged in to the relay.
///
/// # Errors
/// When it does not start or does not log in within 10 s.
pub async fn start_server(site: &Site) -> Result<bramble_server::ServerHandle, BenchError> {
    let store = open_store(&site.cfg).await?;
    let server = bramble_server::start(&site.cfg, store)
        .await
        .map_err(|e| setup_err("the enterprise server")(e.to_string()))?;
    if !server.router.wait_up(Duration::from_secs(10)).await {
        return Err(BenchError::Setup(
            "the server did not log in to the relay".into(),
        ));
    }
    Ok(server)
}

/// The users added by [`add_users`]: the server's OPAQUE setup and each user's record.
#[derive(Debug)]
pub struct Users {
    /// The server's OPAQUE setup (as stored).
    pub setup: Vec<u8>,
    /// Each user and its OPAQUE registration record, in the order given.
    pub records: Vec<(String, Vec<u8>)>,
}

/// Adds `emails` to the server's database, each with the activation `password` (an hour to
/// use it, five attempts). Before the server starts, so that it watches every mailbox from the
/// start, as after a restart. OPAQUE registration stretches each password with Argon2id: on
/// the blocking pool, every core, with a progress bar.
///
/// # Errors
/// When a registration or the database fails.
pub async fn add_users(
    cfg: &ServerConfig,
    emails: &[String],
    password: &str,
    label: &str,
) -> Result<Users, BenchError> {
    let store = open_store(cfg).await?;
    let setup = store
        .secret_or_insert(
            bramble_server::messaging::activation::OPAQUE_SETUP,
            pake::new_server_setup,
        )
        .await
        .map_err(|e| setup_err("the OPAQUE setup")(e.to_string()))?;
    let bar = progress::bar(emails.len() as u64, label);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, email) in emails.iter().enumerate() {
        let (setup, email, password) = (setup.clone(), email.clone(), password.to_owned());
        tasks.spawn_blocking(move || {
            pake::register(&setup, &email, password.as_bytes()).map(|r| (i, email, r))
        });
    }
    let mut records = Vec::with_capacity(emails.len());
    while let Some(r) = tasks.join_next().await {
        let (i, email, record) = r
            .map_err(|e| BenchError::Setup(e.to_string()))?
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        records.push((i, email, record));
        bar.inc(1);
    }
    bar.finish_and_clear();
    records.sort_by_key(|r| r.0);
    let expires = bramble_store::now_ms() + 3_600_000;
    for (_, email, record) in &records {
        store
            .add_user(email, None)
            .await
            .map_err(|e| setup_err("a user")(e.to_string()))?;
        store
            .set_activation(email, record, expires, 5)
            .await
            .map_err(|e| setup_err("an activation password")(e.to_string()))?;
    }
    store.close().await;
    Ok(Users {
        setup,
        records: records.into_iter().map(|(_, e, r)| (e, r)).collect(),
    })
}
