//! The IMAP watcher: one task, one connection per watched mailbox.
//!
//! The task connects (plain TCP, or TLS from the first byte with [`ImapTls`]), logs in — as the
//! service account (`user@domain*service` with the service password: a Dovecot master user,
//! the way BES's service account reached every Exchange mailbox) or as the user — and selects
//! `INBOX`. Then, and after every wake-up:
//!
//! 1. `UID SEARCH UID n:*` lists the messages it has not looked at (`n` is the first UID not
//!    yet looked at; it starts at 1, so what was waiting before the watch started is found).
//! 2. `UID FETCH … (UID RFC822.SIZE BODYSTRUCTURE)`: a message over the size limit is not
//!    downloaded; a message whose structure names no `ETP.DAT` is not downloaded either.
//! 3. The others: `UID FETCH uid (BODY.PEEK[]<0.limit+1>)` (bounded even if the server lied
//!    about the size; `PEEK` leaves `\Seen` alone), parsed; an activation request is handed to
//!    the channel, then removed with `UID STORE +FLAGS.SILENT (\Deleted)` and `UID EXPUNGE`
//!    (plain `EXPUNGE` on a server without UIDPLUS, which also removes other messages flagged
//!    `\Deleted`).
//! 4. Reconciliation (with a sink that holds messages of this INBOX): the known UIDs under the
//!    current UIDVALIDITY, in chunks of 500, `UID SEARCH UID set` (which are still there) and
//!    `UID FETCH set (UID FLAGS)` — after the first comparison of a connection with
//!    `(CHANGEDSINCE modseq)` when INBOX was selected with CONDSTORE, so only changed
//!    messages come back (the mod-sequence is kept in memory, not across connections). A
//!    message whose flags differ is reported changed; one not found, marked `\Deleted`, or
//!    known under another UIDVALIDITY, gone. A refusal skips the round (and turns
//!    `CHANGEDSINCE` off); an answer that does not parse reconnects without CONDSTORE, and a
//!    second time turns reconciliation off for the mailbox.
//! 5. `IDLE` until the server reports a change (Dovecot holds IDLE notifications for 500 ms)
//!    or [`ImapConfig::idle_timeout`] passes (RFC 2177: re-IDLE within 29 minutes), then
//!    `DONE` and back to 1. A server without IDLE is looked at every
//!    [`ImapConfig::poll_interval`].
//!
//! UIDVALIDITY and `n` survive a reconnect, so nothing is missed or looked at twice; a changed
//! UIDVALIDITY makes it look through the whole mailbox again. UIDs handed over but not yet
//! expunged when a connection drops are expunged after the reconnect. A dropped connection is
//! retried after [`ImapConfig::backoff_min`], doubling to [`ImapConfig::backoff_max`], with
//! jitter; a refused login after [`ImapConfig::login_retry`] (an operator has to fix it), logged
//! as an error naming the account to check.
//!
//! If the server's `BODYSTRUCTURE` cannot be parsed, the watcher reconnects and from then on
//! downloads every message within the size limit instead.
//!
//! The connection and login steps ([`login`], [`timed`], [`logout`]) are shared with
//! [`super::access`], which opens other folders than INBOX for one operation at a time.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_imap::error::Error as ProtoError;
use async_imap::imap_proto::{Response, Status};
use futures::TryStreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

use super::scan::{self, Verdict};
use super::{ActivationMail, Backoff, Context, WatcherState, jitter};

/// How to reach and log in to the IMAP server.
#[derive(Clone)]
pub struct ImapConfig {
    /// `host:port`, e.g. `imap.example.com:993`.
    pub addr: String,
    /// TLS from the first byte (port 993); `None`: plain TCP (port 143, loopback or a trusted
    /// network only).
    pub tls: Option<ImapTls>,
    /// Whose credentials open each mailbox.
    pub auth: ImapAuth,
    /// How long one IDLE lasts before `DONE`, a look at the mailbox, and a new IDLE. RFC 2177
    /// asks for less than 29 minutes. Default 25 minutes.
    pub idle_timeout: Duration,
    /// How often a server without IDLE is looked at. Default 60 s.
    pub poll_interval: Duration,
    /// The first pause before reconnecting after the connection failed. Default 1 s.
    pub backoff_min: Duration,
    /// The longest such pause. Default 2 minutes.
    pub backoff_max: Duration,
    /// The pause after a refused login. Default 5 minutes.
    pub login_retry: Duration,
    /// The longest wait for the connection, TLS, or any command's answer. Default 30 s.
    pub timeout: Duration,
}

impl ImapConfig {
    /// `addr` (`host:port`, plain TCP) with `auth` and the default timings.
    pub fn new(addr: impl Into<String>, auth: ImapAuth) -> ImapConfig {
        ImapConfig {
            addr: addr.into(),
            tls: None,
            auth,
            idle_timeout: Duration::from_secs(25 * 60),
            poll_interval: Duration::from_secs(60),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(120),
            login_retry: Duration::from_secs(300),
            timeout: Duration::from_secs(30),
        }
    }
}

impl fmt::Debug for ImapConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapConfig")
            .field("addr", &self.addr)
            .field("tls", &self.tls)
            .field("auth", &self.auth)
            .field("idle_timeout", &self.idle_timeout)
            .field("poll_interval", &self.poll_interval)
            .field("backoff_min", &self.backoff_min)
            .field("backoff_max", &self.backoff_max)
            .field("login_retry", &self.login_retry)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// TLS for the IMAP connection (implicit TLS, as on port 993).
#[derive(Clone)]
pub struct ImapTls {
    /// The name the server's certificate must carry.
    pub server_name: String,
    /// Roots and settings; build it with the ring provider (the workspace's only one).
    pub config: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for ImapTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// Whose credentials open a user's mailbox.
#[derive(Clone)]
pub enum ImapAuth {
    /// One account that may open every mailbox (Dovecot: a master user). The login is
    /// `EMAIL` + `separator` + `user`, e.g. `alice@example.test*service`.
    ServiceAccount {
        /// The service account's name.
        user: String,
        /// Its password.
        password: String,
        /// Dovecot's `auth_master_user_separator`, usually `*`.
        separator: char,
    },
    /// Each user with their own password.
    PerUser {
        /// Gives the password for an address (lower-cased), or `None` if there is none.
        password_for: PasswordLookup,
    },
}

impl ImapAuth {
    /// A service account with Dovecot's usual separator, `*`.
    pub fn service_account(user: impl Into<String>, password: impl Into<String>) -> ImapAuth {
        ImapAuth::ServiceAccount {
            user: user.into(),
            password: password.into(),
            separator: '*',
        }
    }

    /// The login name and password for `email`, and how to name the account in an error.
    fn credentials(&self, email: &str) -> Option<(String, String)> {
        match self {
            ImapAuth::ServiceAccount {
                user,
                password,
                separator,
            } => Some((format!("{email}{separator}{user}"), password.clone())),
            ImapAuth::PerUser { password_for } => {
                (password_for.0)(email).map(|p| (email.to_owned(), p))
            }
        }
    }

    fn account(&self) -> (String, &'static str) {
        match self {
            ImapAuth::ServiceAccount { user, .. } => {
                (format!("as {user}"), "[server.mail] service account")
            }
            ImapAuth::PerUser { .. } => (
                "with the user's password".to_owned(),
                "the user's mail password",
            ),
        }
    }
}

impl fmt::Debug for ImapAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImapAuth::ServiceAccount {
                user, separator, ..
            } => f
                .debug_struct("ServiceAccount")
                .field("user", user)
                .field("password", &"<redacted>")
                .field("separator", separator)
                .finish(),
            ImapAuth::PerUser { .. } => f.debug_struct("PerUser").finish_non_exhaustive(),
        }
    }
}

type LookupFn = dyn Fn(&str) -> Option<String> + Send + Sync;

/// A function from an address to its IMAP password (for [`ImapAuth::PerUser`]).
#[derive(Clone)]
pub struct PasswordLookup(Arc<LookupFn>);

impl PasswordLookup {
    /// Wraps `f`.
    pub fn new(f: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> PasswordLookup {
        PasswordLookup(Arc::new(f))
    }

    /// The password kept for `email`, if any.
    pub fn get(&self, email: &str) -> Option<String> {
        (self.0)(email)
    }
}

impl fmt::Debug for PasswordLookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordLookup(..)")
    }
}

/// What [`super::Watchers::check_login`] saw of a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    /// INBOX's UIDVALIDITY.
    pub uid_validity: Option<u32>,
    /// INBOX's UIDNEXT.
    pub uid_next: Option<u32>,
    /// How many messages INBOX holds.
    pub exists: u32,
    /// The server offers IDLE (else the watcher polls).
    pub idle: bool,
    /// The server offers UIDPLUS (else removal falls back to plain EXPUNGE).
    pub uidplus: bool,
}

/// Why an IMAP step failed.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    /// The server could not be reached, or closed the connection before its greeting.
    #[error("cannot reach the IMAP server at {addr}: {reason}")]
    Unreachable {
        /// `host:port`.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The TLS handshake failed.
    #[error("TLS with the IMAP server at {addr} failed: {reason}")]
    Tls {
        /// `host:port`.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The server refused the login.
    #[error("IMAP login for {email} {account} failed: {reason}; check {hint}")]
    Login {
        /// Whose mailbox.
        email: String,
        /// "as service", or "with the user's password".
        account: String,
        /// What the server said.
        reason: String,
        /// What the operator should look at.
        hint: &'static str,
    },
    /// [`ImapAuth::PerUser`] has no password for this address.
    #[error("no IMAP password is known for {email}")]
    NoPassword {
        /// Whose mailbox.
        email: String,
    },
    /// The login worked but the folder (INBOX for the watchers) cannot be selected: no such
    /// mailbox, or no rights.
    #[error(
        "IMAP login for {email} worked, but its {folder} cannot be opened (no such mailbox, or missing rights): {reason}"
    )]
    Select {
        /// Whose mailbox.
        email: String,
        /// The folder, as sent to the server (`INBOX`, or a modified UTF-7 name).
        folder: String,
        /// What the server said.
        reason: String,
    },
    /// The server did not answer in time.
    #[error("the IMAP server at {addr} did not answer {what} within {after:?}")]
    Timeout {
        /// `host:port`.
        addr: String,
        /// The step.
        what: &'static str,
        /// How long was waited.
        after: Duration,
    },
    /// The messaging agent could not take a new message (it is offered again later).
    #[error("new mail in {email}'s mailbox could not be taken for the device yet: {reason}")]
    Sink {
        /// Whose mailbox.
        email: String,
        /// Why.
        reason: String,
    },
    /// A command failed, or the connection broke.
    #[error("IMAP {what} for {email} failed: {reason}")]
    Protocol {
        /// Whose mailbox.
        email: String,
        /// The step.
        what: &'static str,
        /// What went wrong.
        reason: String,
        /// The answer could not be parsed (as opposed to a refusal or a broken connection).
        parse: bool,
    },
}

impl ImapError {
    /// A refused login or a missing password: an operator has to act.
    pub fn is_login(&self) -> bool {
        matches!(self, ImapError::Login { .. } | ImapError::NoPassword { .. })
    }
}

/// The stream under an IMAP session: TCP or TLS.
pub(crate) trait ImapIo: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug> ImapIo for T {}

/// A logged-in IMAP session (shared with [`super::access`]).
pub(crate) type Session = async_imap::Session<Box<dyn ImapIo>>;

/// A session with a folder (INBOX for the watchers) selected.
struct Opened {
    session: Session,
    info: MailboxInfo,
    /// HIGHESTMODSEQ, when the folder was selected with CONDSTORE and the server gave one.
    highest_modseq: Option<u64>,
}

/// What the server said, without async-imap's `code: …, info: …` wrapping where possible.
pub(crate) fn server_said(e: &ProtoError) -> String {
    let text = match e {
        ProtoError::No(t) | ProtoError::Bad(t) => t,
        other => return other.to_string(),
    };
    // async-imap formats `code: Some(..), info: Some("the server's words")`
    match (text.find("info: Some(\""), text.rfind("\")")) {
        (Some(a), Some(b)) if a + 12 <= b => text[a + 12..b].replace("\\\"", "\""),
        _ => text.clone(),
    }
}

/// `fut`, bounded by [`ImapConfig::timeout`], its error in an operator's words.
pub(crate) async fn timed<T>(
    cfg: &ImapConfig,
    email: &str,
    what: &'static str,
    fut: impl Future<Output = async_imap::error::Result<T>>,
) -> Result<T, ImapError> {
    match tokio::time::timeout(cfg.timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ImapError::Protocol {
            email: email.to_owned(),
            what,
            reason: server_said(&e),
            parse: matches!(e, ProtoError::Parse(_)),
        }),
        Err(_) => Err(ImapError::Timeout {
            addr: cfg.addr.clone(),
            what,
            after: cfg.timeout,
        }),
    }
}

/// Connects, logs in for `email`, selects `folder` (as sent to the server: `INBOX`, or a
/// modified UTF-7 name); with `condstore`, `SELECT … (CONDSTORE)` when the server offers it.
async fn open(
    cfg: &ImapConfig,
    email: &str,
    folder: &str,
    condstore: bool,
) -> Result<Opened, ImapError> {
    let (mut session, caps) = login(cfg, email).await?;
    let condstore = condstore && caps.has_str("CONDSTORE");
    let what = if folder == "INBOX" {
        "SELECT INBOX"
    } else {
        "SELECT"
    };
    let timeout = |what| ImapError::Timeout {
        addr: cfg.addr.clone(),
        what,
        after: cfg.timeout,
    };
    let select = async {
        if condstore {
            session.select_condstore(folder).await
        } else {
            session.select(folder).await
        }
    };
    let mailbox = match tokio::time::timeout(cfg.timeout, select).await {
        Err(_) => return Err(timeout(what)),
        Ok(Ok(m)) => m,
        Ok(Err(e @ (ProtoError::No(_) | ProtoError::Bad(_)))) => {
            return Err(ImapError::Select {
                email: email.to_owned(),
                folder: folder.to_owned(),
                reason: server_said(&e),
            });
        }
        Ok(Err(e)) => {
            return Err(ImapError::Protocol {
                email: email.to_owned(),
                what,
                reason: server_said(&e),
                parse: matches!(e, ProtoError::Parse(_)),
            });
        }
    };
    let info = MailboxInfo {
        uid_validity: mailbox.uid_validity,
        uid_next: mailbox.uid_next,
        exists: mailbox.exists,
        idle: caps.has_str("IDLE"),
        uidplus: caps.has_str("UIDPLUS"),
    };
    Ok(Opened {
        session,
        info,
        highest_modseq: mailbox.highest_modseq.filter(|_| condstore),
    })
}

/// Connects and logs in for `email` (as [`ImapConfig::auth`] says); returns the session in
/// the authenticated state and the server's capabilities.
pub(crate) async fn login(
    cfg: &ImapConfig,
    email: &str,
) -> Result<(Session, async_imap::types::Capabilities), ImapError> {
    let unreachable = |reason: String| ImapError::Unreachable {
        addr: cfg.addr.clone(),
        reason,
    };
    let timeout = |what| ImapError::Timeout {
        addr: cfg.addr.clone(),
        what,
        after: cfg.timeout,
    };
    let tcp = tokio::time::timeout(cfg.timeout, TcpStream::connect(&cfg.addr))
        .await
        .map_err(|_| timeout("the connection"))?
        .map_err(|e| unreachable(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn ImapIo> = match &cfg.tls {
        None => Box::new(tcp),
        Some(tls) => {
            let tls_err = |reason: String| ImapError::Tls {
                addr: cfg.addr.clone(),
                reason,
            };
            let name = rustls::pki_types::ServerName::try_from(tls.server_name.clone())
                .map_err(|e| tls_err(format!("server name {:?}: {e}", tls.server_name)))?;
            let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
            let stream = tokio::time::timeout(cfg.timeout, connector.connect(name, tcp))
                .await
                .map_err(|_| timeout("the TLS handshake"))?
                .map_err(|e| tls_err(e.to_string()))?;
            Box::new(stream)
        }
    };
    let mut client = async_imap::Client::new(io);
    let greeting = tokio::time::timeout(cfg.timeout, client.read_response())
        .await
        .map_err(|_| timeout("with its greeting"))?
        .map_err(|e| unreachable(e.to_string()))?
        .ok_or_else(|| unreachable("closed the connection before its greeting".into()))?;
    if let Response::Data {
        status: Status::Bye | Status::No | Status::Bad,
        outcome,
    } = greeting.parsed()
    {
        return Err(unreachable(format!(
            "refused the connection: {}",
            outcome
                .information
                .as_deref()
                .unwrap_or("(no reason given)")
        )));
    }

    let (login, password) = cfg
        .auth
        .credentials(email)
        .ok_or_else(|| ImapError::NoPassword {
            email: email.to_owned(),
        })?;
    let mut session = match tokio::time::timeout(cfg.timeout, client.login(&login, &password)).await
    {
        Err(_) => return Err(timeout("the login")),
        Ok(Ok(s)) => s,
        Ok(Err((e @ (ProtoError::No(_) | ProtoError::Bad(_)), _))) => {
            let (account, mut hint) = cfg.auth.account();
            let reason = server_said(&e);
            // RFC 5530: the credentials were right, but they may not open this mailbox (with a
            // Dovecot master user: no such user, or the master user may not act for it)
            if reason.contains("[AUTHORIZATIONFAILED]") {
                hint =
                    "that the user exists on the mail server and the account may open its mailbox";
            }
            return Err(ImapError::Login {
                email: email.to_owned(),
                account,
                reason,
                hint,
            });
        }
        Ok(Err((e, _))) => {
            return Err(ImapError::Protocol {
                email: email.to_owned(),
                what: "login",
                reason: server_said(&e),
                parse: matches!(e, ProtoError::Parse(_)),
            });
        }
    };
    let caps = timed(cfg, email, "CAPABILITY", session.capabilities()).await?;
    Ok((session, caps))
}

/// `LOGOUT`, waiting at most 2 s for the answer; errors are ignored.
pub(crate) async fn logout(mut session: Session) {
    let _ = tokio::time::timeout(Duration::from_secs(2), session.logout()).await;
}

/// See [`super::Watchers::check_login`].
pub(crate) async fn check_login(cfg: &ImapConfig, email: &str) -> Result<MailboxInfo, ImapError> {
    let opened = open(cfg, email, "INBOX", false).await?;
    logout(opened.session).await;
    Ok(opened.info)
}

/// `1,2,5` (sorted UIDs, as a UID set).
fn uid_set(uids: impl IntoIterator<Item = u32>) -> String {
    uids.into_iter()
        .map(|u| u.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Looks at the mailbox again, at most this many times in a row, when responses announced
/// changes while it was being looked at.
const MAX_EXTRA_LOOKS: u32 = 3;
/// When the mailbox still announced changes after [`MAX_EXTRA_LOOKS`], the next look comes
/// after this at the latest: IDLE does not announce again what was announced already.
const SETTLE: Duration = Duration::from_secs(1);
/// At most this many UIDs per `UID FETCH` of sizes and structures.
const FETCH_CHUNK: usize = 256;

/// One mailbox's watcher, across reconnects.
struct Watcher {
    cx: Context,
    cfg: Arc<ImapConfig>,
    /// INBOX's UIDVALIDITY when last selected.
    uid_validity: Option<u32>,
    /// The first UID not looked at yet.
    next_uid: u32,
    /// Handed over, not yet expunged.
    pending_delete: BTreeSet<u32>,
    /// Ask for BODYSTRUCTURE (false after the server sent one that did not parse).
    use_bodystructure: bool,
    /// Push mail: the first UID not yet offered to the sink (`None`: no sink, or not known
    /// yet).
    push_from: Option<u32>,
    /// Reconciliation, server to device.
    rec: Reconcile,
    backoff: Backoff,
    failures: u32,
}

/// What a watcher keeps for reconciliation, server to device.
#[derive(Debug)]
struct Reconcile {
    /// Compare at all (false once the server's flag answers did not parse even without
    /// CONDSTORE).
    enabled: bool,
    /// Select with CONDSTORE when the server offers it (false once its answers did not parse,
    /// or it refused `CHANGEDSINCE`).
    condstore: bool,
    /// This connection: every flag change up to this mod-sequence has been compared; `None`:
    /// compare every flag next time (after each connect).
    modseq: Option<u64>,
    /// HIGHESTMODSEQ from this connection's `SELECT INBOX (CONDSTORE)`; `None` without CONDSTORE.
    selected_modseq: Option<u64>,
}

/// Why an IDLE ended.
enum Wake {
    /// Something changed, or the IDLE timed out: look at the mailbox.
    Look(Session),
    /// Something was announced as the IDLE started, before it was waited on: look at the
    /// mailbox.
    Early(Session),
    /// The watcher is to stop.
    Stop(Session),
}

/// The task behind [`super::Watchers::watch`] for an IMAP store.
pub(crate) async fn run(cx: Context, cfg: Arc<ImapConfig>) {
    let backoff = Backoff::new(cfg.backoff_min, cfg.backoff_max);
    let mut w = Watcher {
        cx,
        cfg,
        uid_validity: None,
        next_uid: 1,
        pending_delete: BTreeSet::new(),
        use_bodystructure: true,
        push_from: None,
        rec: Reconcile {
            enabled: true,
            condstore: true,
            modseq: None,
            selected_modseq: None,
        },
        backoff,
        failures: 0,
    };
    loop {
        match w.session().await {
            Ok(()) => break,
            Err(e) => {
                w.failures += 1;
                if let ImapError::Protocol { parse: true, .. } = e
                    && w.use_bodystructure
                {
                    tracing::warn!(mailbox = %w.cx.email, "an IMAP answer did not parse: from now on every message within the size limit is downloaded, BODYSTRUCTURE is not asked for");
                    w.use_bodystructure = false;
                }
                let delay = if e.is_login() {
                    jitter(w.cfg.login_retry)
                } else {
                    w.backoff.next_delay()
                };
                if e.is_login() {
                    tracing::error!(mailbox = %w.cx.email, "{e}; retrying in {delay:.1?}");
                } else {
                    tracing::warn!(mailbox = %w.cx.email, "{e}; reconnecting in {delay:.1?}");
                }
                w.cx.set_state(WatcherState::Retrying {
                    error: e.to_string(),
                    attempts: w.failures,
                });
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = w.cx.cancel.cancelled() => break,
                }
            }
        }
    }
    w.cx.set_state(WatcherState::Stopped);
    tracing::debug!(mailbox = %w.cx.email, "IMAP watcher stopped");
}

impl Watcher {
    /// One connection: `Ok` when the watcher is to stop, `Err` when the connection failed.
    async fn session(&mut self) -> Result<(), ImapError> {
        let opened = tokio::select! {
            o = open(&self.cfg, &self.cx.email, "INBOX", self.rec.condstore) => o?,
            () = self.cx.cancel.cancelled() => return Ok(()),
        };
        let info = opened.info;
        let mut session = opened.session;
        // a new connection compares every flag first
        self.rec.modseq = None;
        self.rec.selected_modseq = opened.highest_modseq;
        self.selected(&info);
        self.resume_push(&info).await;
        tracing::debug!(mailbox = %self.cx.email, ?info, "IMAP INBOX selected");
        let mut extra_looks = 0;
        // An IDLE may end at once on what came in as it started (once per real wake-up, so
        // a server that announces something at every IDLE cannot keep the watcher looking).
        let mut early_wake = true;
        loop {
            // The look covers what was announced before it starts.
            while session.unsolicited_responses.try_recv().is_ok() {}
            if !self.sync(&mut session, info.uidplus).await? {
                logout(session).await;
                return Ok(());
            }
            self.reconcile(&mut session).await?;
            // Unsolicited EXISTS/EXPUNGE/FETCH that came in while we looked: what they announce
            // may be newer than the look (a message that arrived, or was moved away, meanwhile),
            // and IDLE would not announce it again: look once more before going idle. Our own
            // commands cause some of them, so this is bounded, and past the bound the next
            // look comes after SETTLE instead of whenever IDLE wakes next.
            let mut announced = 0;
            while session.unsolicited_responses.try_recv().is_ok() {
                announced += 1;
            }
            if announced > 0 && extra_looks < MAX_EXTRA_LOOKS {
                extra_looks += 1;
                continue;
            }
            let wait = if announced > 0 {
                tracing::debug!(mailbox = %self.cx.email, "INBOX is still changing after {MAX_EXTRA_LOOKS} more looks: looking again within {SETTLE:?}");
                SETTLE.min(self.cfg.idle_timeout)
            } else {
                self.cfg.idle_timeout
            };
            extra_looks = 0;
            if self.failures > 0 {
                tracing::info!(mailbox = %self.cx.email, "IMAP watcher back after {} failed attempts", self.failures);
            }
            self.failures = 0;
            self.backoff.reset();
            self.cx.set_state(WatcherState::Watching);
            if info.idle {
                match self.idle(session, wait, early_wake).await? {
                    Wake::Look(s) => {
                        session = s;
                        early_wake = true;
                    }
                    Wake::Early(s) => {
                        session = s;
                        early_wake = false;
                    }
                    Wake::Stop(s) => {
                        logout(s).await;
                        return Ok(());
                    }
                }
            } else {
                tokio::select! {
                    () = tokio::time::sleep(self.cfg.poll_interval.min(wait)) => {}
                    () = self.cx.cancel.cancelled() => {
                        logout(session).await;
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Takes note of a fresh SELECT.
    fn selected(&mut self, info: &MailboxInfo) {
        if let (Some(old), Some(new)) = (self.uid_validity, info.uid_validity)
            && old != new
        {
            tracing::warn!(mailbox = %self.cx.email, "INBOX's UIDVALIDITY changed from {old} to {new}: looking through all of it again");
            self.next_uid = 1;
            self.pending_delete.clear();
            self.push_from = None;
        }
        if let Some(uid_next) = info.uid_next
            && uid_next < self.next_uid
        {
            tracing::warn!(mailbox = %self.cx.email, "INBOX's UIDNEXT {uid_next} is below the next UID expected ({}): looking through all of it again", self.next_uid);
            self.next_uid = 1;
        }
        self.uid_validity = info.uid_validity;
    }

    /// Push mail: where offering resumes after a SELECT. The sink's durable cursor under the
    /// same UIDVALIDITY; else (never looked at, or UIDVALIDITY changed) the folder's UIDNEXT,
    /// so what was there before is not pushed.
    async fn resume_push(&mut self, info: &MailboxInfo) {
        let Some(sink) = self.cx.sink.clone() else {
            return;
        };
        let (Some(validity), Some(uid_next)) = (info.uid_validity, info.uid_next) else {
            tracing::warn!(mailbox = %self.cx.email, "the IMAP server gave no UIDVALIDITY or UIDNEXT: new mail cannot be told from old, so none is pushed");
            self.push_from = None;
            return;
        };
        if self.push_from.is_some() && self.uid_validity == Some(validity) {
            return;
        }
        let from = match sink.cursor(&self.cx.email, "INBOX").await {
            Some((v, next)) if v == validity => next,
            Some((v, _)) => {
                tracing::warn!(mailbox = %self.cx.email, "INBOX's UIDVALIDITY changed from {v} to {validity}: push mail starts again from the next new message");
                uid_next
            }
            None => uid_next,
        };
        sink.advance(&self.cx.email, "INBOX", validity, from).await;
        self.push_from = Some(from);
    }

    /// IDLE until something changes, the IDLE times out, or the watcher is cancelled.
    ///
    /// `timeout`: the longest wait. `early`: end at once when a change was announced while
    /// the IDLE started (before the server's `+ idling`, or between the last look and the
    /// IDLE): the client library passes those on to the unsolicited channel, not to the wait,
    /// which would sleep through them.
    async fn idle(
        &mut self,
        session: Session,
        timeout: Duration,
        early: bool,
    ) -> Result<Wake, ImapError> {
        let cfg = self.cfg.clone();
        let email = self.cx.email.clone();
        let unsolicited = session.unsolicited_responses.clone();
        let mut handle = session.idle();
        timed(&cfg, &email, "IDLE", handle.init()).await?;
        if early && !unsolicited.is_empty() {
            tracing::trace!(mailbox = %email, "a change was announced as IDLE started");
            let session = timed(&cfg, &email, "DONE", handle.done()).await?;
            return Ok(Wake::Early(session));
        }
        let stop = {
            let (wait, _interrupt) = handle.wait_with_timeout(timeout);
            tokio::select! {
                r = tokio::time::timeout(timeout, wait) => {
                    match r {
                        Ok(Ok(response)) => tracing::trace!(mailbox = %email, ?response, "IDLE woke"),
                        Ok(Err(e)) => return Err(ImapError::Protocol {
                            email,
                            what: "IDLE",
                            reason: server_said(&e),
                            parse: matches!(e, ProtoError::Parse(_)),
                        }),
                        Err(_) => tracing::trace!(mailbox = %email, "IDLE timed out"),
                    }
                    false
                }
                () = self.cx.poke.notified() => {
                    tracing::trace!(mailbox = %email, "poked by the push hook");
                    false
                }
                () = self.cx.cancel.cancelled() => true,
            }
        };
        let session = timed(&cfg, &email, "DONE", handle.done()).await?;
        Ok(if stop {
            Wake::Stop(session)
        } else {
            Wake::Look(session)
        })
    }

    /// Looks at every message from `next_uid` on. `Ok(false)`: stop.
    async fn sync(&mut self, s: &mut Session, uidplus: bool) -> Result<bool, ImapError> {
        let cfg = self.cfg.clone();
        let email = self.cx.email.clone();
        self.flush_deletes(s, uidplus).await?;
        let query = format!("UID {}:*", self.next_uid);
        let found = timed(&cfg, &email, "UID SEARCH", s.uid_search(&query)).await?;
        let next = self.next_uid;
        // `n:*` also matches the last message when n is past it
        let mut uids: Vec<u32> = found.into_iter().filter(|&u| u >= next).collect();
        uids.sort_unstable();
        let wants = match (&self.cx.sink, self.push_from) {
            (Some(sink), Some(from)) if uids.last().is_some_and(|&u| u >= from) => {
                sink.wants(&email).await
            }
            _ => false,
        };
        for chunk in uids.chunks(FETCH_CHUNK) {
            let items = if self.use_bodystructure {
                "(UID RFC822.SIZE BODYSTRUCTURE)"
            } else {
                "(UID RFC822.SIZE)"
            };
            let set = uid_set(chunk.iter().copied());
            let fetched = timed(&cfg, &email, "UID FETCH (sizes)", async {
                s.uid_fetch(&set, items)
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            })
            .await?;
            let mut seen: Vec<(u32, Option<u32>, Option<bool>)> = fetched
                .iter()
                .filter_map(|f| {
                    let uid = f.uid?;
                    let may = f.bodystructure().map(scan::structure_may_hold_etp_dat);
                    Some((uid, f.size, may))
                })
                .filter(|(uid, _, _)| *uid >= next)
                .collect();
            drop(fetched);
            seen.sort_unstable_by_key(|(uid, _, _)| *uid);
            seen.dedup_by_key(|(uid, _, _)| *uid);
            for (uid, size, may) in seen {
                let push = self.push_from.filter(|&from| uid >= from).map(|_| wants);
                if !self.look_at(s, uid, size, may, push).await? {
                    return Ok(false);
                }
                // an activation request handed over: remove it now, not after the whole batch
                self.flush_deletes(s, uidplus).await?;
                self.next_uid = self.next_uid.max(uid.saturating_add(1));
                if push.is_some() {
                    self.push_from = Some(uid.saturating_add(1));
                }
            }
            // UIDs that vanished between SEARCH and FETCH
            if let Some(&last) = chunk.last() {
                self.next_uid = self.next_uid.max(last.saturating_add(1));
                if let Some(from) = self.push_from {
                    self.push_from = Some(from.max(last.saturating_add(1)));
                }
            }
            self.save_push_cursor().await;
        }
        self.flush_deletes(s, uidplus).await?;
        Ok(true)
    }

    /// Records how far push mail has got.
    async fn save_push_cursor(&self) {
        if let (Some(sink), Some(from), Some(validity)) =
            (&self.cx.sink, self.push_from, self.uid_validity)
        {
            sink.advance(&self.cx.email, "INBOX", validity, from).await;
        }
    }

    /// A new message for push mail: downloaded (at most [`super::PUSH_FETCH_BYTES`]) with its
    /// flags; an activation request goes the activation way, anything else to the sink.
    /// `Ok(false)`: stop.
    async fn push_one(
        &mut self,
        s: &mut Session,
        uid: u32,
        size: Option<u32>,
    ) -> Result<bool, ImapError> {
        let email = self.cx.email.clone();
        let cfg = self.cfg.clone();
        let cap = super::PUSH_FETCH_BYTES;
        let items = format!("(UID FLAGS RFC822.SIZE BODY.PEEK[]<0.{cap}>)");
        let fetched = timed(&cfg, &email, "UID FETCH (new mail)", async {
            s.uid_fetch(uid.to_string(), &items)
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        let Some(f) = fetched.iter().find(|f| f.uid == Some(uid)) else {
            tracing::debug!(mailbox = %email, uid, "message gone before it was downloaded");
            return Ok(true);
        };
        let raw = f.body().unwrap_or_default().to_vec();
        let size = f.size.or(size).map_or(raw.len() as u64, u64::from);
        let (mut seen, mut flagged) = (false, false);
        for flag in f.flags() {
            match flag {
                async_imap::types::Flag::Seen => seen = true,
                async_imap::types::Flag::Flagged => flagged = true,
                _ => {}
            }
        }
        drop(fetched);
        if raw.len() as u64 <= self.cx.limits.max_message_bytes
            && let verdict @ (Verdict::Activation { .. } | Verdict::OversizedEtpDat { .. }) =
                scan::inspect(&raw, &self.cx.limits)
        {
            return self.activation_verdict(uid, verdict).await;
        }
        let Some(validity) = self.uid_validity else {
            return Ok(true);
        };
        let Some(sink) = self.cx.sink.clone() else {
            return Ok(true);
        };
        let mail = super::NewMail {
            mailbox: email.clone(),
            folder: "INBOX".to_owned(),
            place: super::Place::Imap {
                uid_validity: validity,
                uid,
            },
            size,
            raw,
            seen,
            flagged,
        };
        sink.offer(mail).await.map_err(|reason| ImapError::Sink {
            email: email.clone(),
            reason,
        })?;
        Ok(true)
    }

    /// One message. `push`: `Some(wants)` when it is new for push mail. `Ok(false)`: stop.
    async fn look_at(
        &mut self,
        s: &mut Session,
        uid: u32,
        size: Option<u32>,
        may_hold: Option<bool>,
        push: Option<bool>,
    ) -> Result<bool, ImapError> {
        if push == Some(true) {
            return self.push_one(s, uid, size).await;
        }
        let email = self.cx.email.clone();
        let max = self.cx.limits.max_message_bytes;
        if let Some(size) = size
            && u64::from(size) > max
        {
            tracing::warn!(mailbox = %email, uid, size, "message over the size limit of {max} bytes: not downloaded, left in the mailbox");
            return Ok(true);
        }
        if may_hold == Some(false) {
            tracing::trace!(mailbox = %email, uid, "no ETP.DAT in its structure");
            return Ok(true);
        }
        let items = format!("(UID BODY.PEEK[]<0.{}>)", max.saturating_add(1));
        let cfg = self.cfg.clone();
        let fetched = timed(&cfg, &email, "UID FETCH (message)", async {
            s.uid_fetch(uid.to_string(), &items)
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        let Some(raw) = fetched
            .iter()
            .find(|f| f.uid == Some(uid))
            .and_then(|f| f.body())
        else {
            tracing::debug!(mailbox = %email, uid, "message gone before it was downloaded");
            return Ok(true);
        };
        let verdict = scan::inspect(raw, &self.cx.limits);
        drop(fetched);
        self.activation_verdict(uid, verdict).await
    }

    /// What becomes of a message [`scan::inspect`]ed. `Ok(false)`: stop.
    async fn activation_verdict(&mut self, uid: u32, verdict: Verdict) -> Result<bool, ImapError> {
        let email = self.cx.email.clone();
        let max = self.cx.limits.max_message_bytes;
        let limits = self.cx.limits;
        match verdict {
            Verdict::Ordinary => {
                tracing::trace!(mailbox = %email, uid, "not an activation request");
            }
            Verdict::TooLarge { size } => {
                tracing::warn!(mailbox = %email, uid, size, "message over the size limit of {max} bytes: left in the mailbox");
            }
            Verdict::Unparseable => {
                tracing::warn!(mailbox = %email, uid, "message does not parse as mail: left in the mailbox");
            }
            Verdict::OversizedEtpDat {
                size,
                message_id,
                from,
            } => {
                tracing::warn!(mailbox = %email, uid, size, ?message_id, ?from,
                    "ETP.DAT over the limit of {} bytes: ignored, message removed", limits.max_etp_dat_bytes);
                self.pending_delete.insert(uid);
            }
            Verdict::Activation {
                etp_dat,
                message_id,
                from,
                count,
            } => {
                if count > 1 {
                    tracing::warn!(mailbox = %email, uid, count, "message has {count} ETP.DAT attachments: only the first is used");
                }
                tracing::info!(mailbox = %email, uid, ?message_id, ?from, bytes = etp_dat.len(), "activation request mail found");
                let mail = ActivationMail {
                    mailbox: email,
                    etp_dat,
                    message_id,
                    from,
                };
                if !self.cx.deliver(mail).await {
                    return Ok(false);
                }
                self.pending_delete.insert(uid);
            }
        }
        Ok(true)
    }

    /// Removes the messages handed over.
    async fn flush_deletes(&mut self, s: &mut Session, uidplus: bool) -> Result<(), ImapError> {
        if self.pending_delete.is_empty() {
            return Ok(());
        }
        let cfg = self.cfg.clone();
        let email = self.cx.email.clone();
        let set = uid_set(self.pending_delete.iter().copied());
        timed(&cfg, &email, "UID STORE \\Deleted", async {
            s.uid_store(&set, "+FLAGS.SILENT (\\Deleted)")
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        if uidplus {
            timed(&cfg, &email, "UID EXPUNGE", async {
                s.uid_expunge(&set).await?.try_collect::<Vec<_>>().await
            })
            .await?;
        } else {
            timed(&cfg, &email, "EXPUNGE", async {
                s.expunge().await?.try_collect::<Vec<_>>().await
            })
            .await?;
        }
        tracing::debug!(mailbox = %email, uids = %set, "activation mails removed");
        self.pending_delete.clear();
        Ok(())
    }
}

/// The most of the sink's messages compared with INBOX per look.
const KNOWN_LIMIT: u32 = 5000;
/// At most this many UIDs per `UID SEARCH` or `UID FETCH` of flags.
const FLAGS_CHUNK: usize = 500;
/// At most this many changes passed to the sink per look; the rest in the next look, right
/// after.
const CHANGES_PER_LOOK: usize = 500;

/// Why a step of reconciliation failed.
enum RecFailure {
    /// The server refused a command (NO, BAD): skip this round.
    Refused(String),
    /// An answer did not parse: the connection is out of step.
    Parse(ImapError),
    /// The connection broke or timed out.
    Broken(ImapError),
}

/// `fut`, bounded by [`ImapConfig::timeout`], sorted into [`RecFailure`]s.
async fn rec_step<T>(
    cfg: &ImapConfig,
    email: &str,
    what: &'static str,
    fut: impl Future<Output = async_imap::error::Result<T>>,
) -> Result<T, RecFailure> {
    match tokio::time::timeout(cfg.timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e @ (ProtoError::No(_) | ProtoError::Bad(_)))) => Err(RecFailure::Refused(format!(
            "IMAP {what} for {email} was refused: {}",
            server_said(&e)
        ))),
        Ok(Err(e)) => {
            let parse = matches!(e, ProtoError::Parse(_));
            // `parse: false`: a flags answer that does not parse says nothing about
            // BODYSTRUCTURE (see `run`)
            let err = ImapError::Protocol {
                email: email.to_owned(),
                what,
                reason: server_said(&e),
                parse: false,
            };
            Err(if parse {
                RecFailure::Parse(err)
            } else {
                RecFailure::Broken(err)
            })
        }
        Err(_) => Err(RecFailure::Broken(ImapError::Timeout {
            addr: cfg.addr.clone(),
            what,
            after: cfg.timeout,
        })),
    }
}

/// A UID set with runs written as ranges: `1:3,7,9:10` (`uids` sorted).
fn uid_ranges(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end.saturating_add(1) {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// (seen, flagged, deleted) from a message's flags.
fn flags_of(f: &async_imap::types::Fetch) -> (bool, bool, bool) {
    let (mut seen, mut flagged, mut deleted) = (false, false, false);
    for flag in f.flags() {
        match flag {
            async_imap::types::Flag::Seen => seen = true,
            async_imap::types::Flag::Flagged => flagged = true,
            async_imap::types::Flag::Deleted => deleted = true,
            _ => {}
        }
    }
    (seen, flagged, deleted)
}

impl Watcher {
    /// Reconciliation, server to device: compares INBOX with the messages the sink holds and
    /// tells it what was read, flagged, expunged or moved away meanwhile. A refusal by the
    /// server is logged and the round skipped; an answer that does not parse turns CONDSTORE
    /// off (then reconciliation) and reconnects; a broken connection reconnects.
    async fn reconcile(&mut self, s: &mut Session) -> Result<(), ImapError> {
        match self.try_reconcile(s).await {
            Ok(()) => Ok(()),
            Err(RecFailure::Refused(why)) => {
                if self.rec.modseq.is_some() {
                    tracing::warn!(mailbox = %self.cx.email, "{why}; from now on every flag is compared (CONDSTORE is not used)");
                    self.rec.condstore = false;
                    self.rec.modseq = None;
                    self.rec.selected_modseq = None;
                } else {
                    tracing::warn!(mailbox = %self.cx.email, "{why}; changes made in the mailbox reach the device after the next look");
                }
                Ok(())
            }
            Err(RecFailure::Parse(e)) => {
                if self.rec.condstore {
                    tracing::warn!(mailbox = %self.cx.email, "{e}: reconnecting without CONDSTORE (every flag is compared)");
                    self.rec.condstore = false;
                } else {
                    tracing::error!(mailbox = %self.cx.email, "{e}: reconnecting; read, flagged, deleted and moved messages are no longer passed on to the device for this mailbox until the server restarts");
                    self.rec.enabled = false;
                }
                Err(e)
            }
            Err(RecFailure::Broken(e)) => Err(e),
        }
    }

    async fn try_reconcile(&mut self, s: &mut Session) -> Result<(), RecFailure> {
        let Some(sink) = self.cx.sink.clone() else {
            return Ok(());
        };
        let Some(validity) = self.uid_validity.filter(|_| self.rec.enabled) else {
            return Ok(());
        };
        let email = self.cx.email.clone();
        let cfg = self.cfg.clone();
        let known = sink.known(&email, "INBOX", KNOWN_LIMIT).await;
        if known.is_empty() {
            return Ok(());
        }
        let gone = |place| super::MailboxChange::Gone {
            mailbox: email.clone(),
            folder: "INBOX".to_owned(),
            place,
        };
        let mut changes = Vec::new();
        let mut flags = std::collections::BTreeMap::new();
        for k in known {
            match k.place {
                super::Place::Imap { uid_validity, uid } if uid_validity == validity => {
                    flags.insert(uid, (k.seen, k.flagged));
                }
                // recorded under another UIDVALIDITY: those UIDs name nothing now
                place @ super::Place::Imap { .. } => changes.push(gone(place)),
                super::Place::Maildir { .. } => {}
            }
        }
        let since = self.rec.modseq;
        let mut top = since;
        tracing::trace!(mailbox = %email, known = flags.len(), changed_since = ?since, "comparing INBOX with the messages on the device");
        let uids: Vec<u32> = flags.keys().copied().collect();
        for chunk in uids.chunks(FLAGS_CHUNK) {
            let set = uid_ranges(chunk);
            let present = rec_step(
                &cfg,
                &email,
                "UID SEARCH (known messages)",
                s.uid_search(format!("UID {set}")),
            )
            .await?;
            let items = match since {
                Some(m) => format!("(UID FLAGS) (CHANGEDSINCE {m})"),
                None => "(UID FLAGS)".to_owned(),
            };
            let fetched = rec_step(&cfg, &email, "UID FETCH (flags)", async {
                s.uid_fetch(&set, &items)
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            })
            .await?;
            let mut deleted = BTreeSet::new();
            for f in &fetched {
                let Some(uid) = f.uid else { continue };
                let Some(&(was_seen, was_flagged)) = flags.get(&uid) else {
                    continue;
                };
                if let Some(m) = f.modseq {
                    top = Some(top.map_or(m, |t: u64| t.max(m)));
                }
                if !present.contains(&uid) {
                    continue;
                }
                let (seen, flagged, del) = flags_of(f);
                if del {
                    // marked for deletion (Maildir's T): as good as gone for the device
                    deleted.insert(uid);
                } else if (seen, flagged) != (was_seen, was_flagged) {
                    changes.push(super::MailboxChange::Flags {
                        mailbox: email.clone(),
                        folder: "INBOX".to_owned(),
                        place: super::Place::Imap {
                            uid_validity: validity,
                            uid,
                        },
                        seen,
                        flagged,
                    });
                }
            }
            drop(fetched);
            for &uid in chunk {
                if !present.contains(&uid) || deleted.contains(&uid) {
                    changes.push(gone(super::Place::Imap {
                        uid_validity: validity,
                        uid,
                    }));
                }
            }
        }
        let all = changes.len() <= CHANGES_PER_LOOK;
        if !all {
            tracing::debug!(mailbox = %email, changes = changes.len(), "many changes in the mailbox: {CHANGES_PER_LOOK} passed on now, the rest right after");
            changes.truncate(CHANGES_PER_LOOK);
            // look again right away instead of waiting in IDLE
            self.cx.poke.notify_one();
        }
        for change in changes {
            if self.cx.cancel.is_cancelled() {
                return Ok(());
            }
            tracing::trace!(mailbox = %email, ?change, "changed in the mailbox");
            sink.changed(change).await;
        }
        if all {
            // after a full comparison, every change up to the SELECT's HIGHESTMODSEQ is seen
            self.rec.modseq = if since.is_none() {
                self.rec.selected_modseq
            } else {
                top
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_words_are_unwrapped() {
        let e = ProtoError::No(
            r#"code: Some(AuthenticationFailed), info: Some("Authentication failed.")"#.into(),
        );
        assert_eq!(server_said(&e), "Authentication failed.");
        let e = ProtoError::No("odd".into());
        assert_eq!(server_said(&e), "odd");
    }

    #[test]
    fn service_login_names_the_user_then_the_account() {
        let auth = ImapAuth::service_account("service", "pw");
        assert_eq!(
            auth.credentials("bob@example.test"),
            Some(("bob@example.test*service".into(), "pw".into()))
        );
        assert!(!format!("{auth:?}").contains("pw\""));
        assert_eq!(uid_set([1, 5, 7]), "1,5,7");
        assert_eq!(uid_ranges(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(uid_ranges(&[4]), "4");
        assert_eq!(uid_ranges(&[]), "");
        assert_eq!(
            uid_ranges(&[u32::MAX - 1, u32::MAX]),
            "4294967294:4294967295"
        );
    }
}
