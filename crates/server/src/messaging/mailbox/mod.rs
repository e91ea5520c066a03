//! Mailbox watchers: the messaging agent's eyes on each user's mailbox. First duty (seed 002,
//! activation step 6): find the activation request mail that the relay sends to the user — a
//! message with an attachment named `ETP.DAT` — hand its bytes to the activation service, and
//! remove the message from the mailbox.
//!
//! One [`Watchers`] serves one mail store, chosen by [`MailboxSource`]:
//!
//! - [`MailboxSource::Imap`]: one task per watched mailbox logs in (as the service account,
//!   `user@domain*service`, or as the user), selects `INBOX`, looks at what is already there,
//!   then waits in IMAP IDLE; see [`imap`].
//! - [`MailboxSource::Maildir`]: the embedded store on local disk,
//!   `ROOT/<lower-cased email>/Maildir/{new,cur,tmp}`, watched with inotify; see [`maildir`].
//!
//! Either way the caller gets an [`ActivationMail`] on the bounded channel it passed in, for
//! every message whose attachment is named `ETP.DAT` (case-insensitive), and the message is then
//! removed. Delivery is *at least once*: a message is removed only after its `ActivationMail`
//! was handed to the channel, so a crash between the two hands it over again after a restart;
//! the activation service must accept a repeated `ETP.DAT`. Within one running watcher nothing is
//! handed over twice.
//!
//! Push mail (seed 002, "Email message flow", step 2): a [`Watchers`] built
//! [`Watchers::with_sink`] also offers every other new message to a [`MailSink`] (the
//! forwarding agent), with its bytes (at most [`PUSH_FETCH_BYTES`]) and flags, and moves on only
//! once the sink has made what the device needs durable. "New" is kept by the sink: for IMAP a
//! durable cursor per folder (UIDVALIDITY and the first UID not yet offered), so after a
//! restart every message that arrived meanwhile is offered (the sink recognises one it has
//! seen), and the first watch of a mailbox starts at its UIDNEXT (what was there before is not
//! pushed); for a Maildir the file being in `new/` — an offered message is moved to `cur/`, as
//! a mail client does. While [`MailSink::wants`] says no (no device takes this user's mail),
//! new messages are passed over and not offered later.
//!
//! Reconciliation, server to device: after each look for new mail, a watcher with a sink also
//! compares the mailbox with the messages the sink holds for INBOX ([`MailSink::known`], at
//! most 5,000) and reports each one whose `\Seen` or `\Flagged` changed
//! ([`MailboxChange::Flags`]) or that is no longer there — expunged, moved to another folder,
//! marked `\Deleted` (Maildir: `T`), or recorded under an older UIDVALIDITY
//! ([`MailboxChange::Gone`]); the sink decides what the device is told (the user's
//! `reconcile` setting). IMAP: `UID SEARCH` and `UID FETCH (UID FLAGS)` of the known UIDs,
//! with CONDSTORE (`CHANGEDSINCE`) when the server offers it, every flag compared after each
//! connect; Maildir: the base names and info parts (`:2,` with `S`, `F`, `T`) in `new/` and
//! `cur/`, a name that is missing being looked for once more before it counts as gone. At most
//! 500 changes are reported per look (the rest in the next, right after); nothing is done when
//! the sink holds nothing; a failure of this step is logged (IMAP: a broken connection
//! reconnects) and does not stop the watcher.
//!
//! Every message is hostile input: a message over [`MailboxConfig::max_message_bytes`] is not
//! downloaded (it is logged and left in the mailbox); an `ETP.DAT` over
//! [`MailboxConfig::max_etp_dat_bytes`] is logged and the message removed; a message that does not
//! parse or has no `ETP.DAT` is left untouched (later, push mail sends it to the phone). Parsing
//! never panics the watcher (mail-parser runs under `catch_unwind` as a last line of defence).
//!
//! Owns: reading and removing activation mails, offering new mail, noticing changes to
//! forwarded mail. Must not touch: what an `ETP.DAT` means (the
//! activation service decodes it), SQL, the relay link.

pub mod access;
pub mod imap;
pub mod maildir;
mod scan;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use imap::{ImapAuth, ImapConfig, ImapError, ImapTls, MailboxInfo, PasswordLookup};
pub use maildir::MaildirConfig;

/// The default for [`MailboxConfig::max_message_bytes`]: 1 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 1024 * 1024;
/// The default for [`MailboxConfig::max_etp_dat_bytes`]: 16 KiB.
pub const DEFAULT_MAX_ETP_DAT_BYTES: usize = 16 * 1024;
/// The attachment name that marks an activation request (compared case-insensitively).
pub const ETP_DAT: &str = "ETP.DAT";

/// The most bytes of a message offered to a [`MailSink`]: a larger message is offered cut
/// there, with its real size (the device gets its headers, its first text and a note).
pub const PUSH_FETCH_BYTES: u64 = 4 * 1024 * 1024;

/// A new message in a watched mailbox, offered to the [`MailSink`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMail {
    /// The watched user's address, lower-cased.
    pub mailbox: String,
    /// The folder, `INBOX`.
    pub folder: String,
    /// Where it is: IMAP UIDVALIDITY and UID, or the Maildir file's base name.
    pub place: Place,
    /// Its size in the mailbox, bytes.
    pub size: u64,
    /// Its bytes, at most [`PUSH_FETCH_BYTES`] (fewer than `size` when it was cut).
    pub raw: Vec<u8>,
    /// `\Seen` is set.
    pub seen: bool,
    /// `\Flagged` is set.
    pub flagged: bool,
}

/// Where a message is in its mail store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// An IMAP message.
    Imap {
        /// The folder's UIDVALIDITY.
        uid_validity: u32,
        /// Its UID.
        uid: u32,
    },
    /// A Maildir file: its name up to the first `:`.
    Maildir {
        /// The base name.
        name: String,
    },
}

impl Place {
    /// The key that names the message in the RefID map: `imap:UIDVALIDITY:UID` or
    /// `maildir:NAME`.
    pub fn source_key(&self) -> String {
        match self {
            Place::Imap { uid_validity, uid } => format!("imap:{uid_validity}:{uid}"),
            Place::Maildir { name } => format!("maildir:{name}"),
        }
    }
}

/// A boxed future, for [`MailSink`]'s methods.
pub type SinkFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What the watchers offer new mail to (the forwarding agent).
pub trait MailSink: Send + Sync + fmt::Debug {
    /// Whether `email`'s new mail is to be offered now (a device takes it). Asked before each
    /// look at the mailbox; a failure should answer `true` (the offer decides again).
    fn wants<'a>(&'a self, email: &'a str) -> SinkFuture<'a, bool>;
    /// Where offering resumes in `folder`: (UIDVALIDITY, the first UID not yet offered);
    /// `None` when the folder was never looked at.
    fn cursor<'a>(&'a self, email: &'a str, folder: &'a str) -> SinkFuture<'a, Option<(u32, u32)>>;
    /// Records that every UID below `next_uid` was offered (or passed over).
    fn advance<'a>(
        &'a self,
        email: &'a str,
        folder: &'a str,
        uid_validity: u32,
        next_uid: u32,
    ) -> SinkFuture<'a, ()>;
    /// A new message. Returns once what the device needs of it is durable; an error (in an
    /// operator's words) leaves it to be offered again later.
    fn offer(&self, mail: NewMail) -> SinkFuture<'_, Result<(), String>>;
    /// The messages of `folder` the sink holds (forwarded to the device and not gone), with
    /// the flags it knows them by, newest last; at most `limit`. The watcher compares them
    /// with the mailbox (reconciliation, server to device).
    fn known<'a>(
        &'a self,
        email: &'a str,
        folder: &'a str,
        limit: u32,
    ) -> SinkFuture<'a, Vec<KnownMail>>;
    /// A message the sink holds changed in the mailbox (read, flagged) or went away (deleted,
    /// or moved to another folder).
    fn changed(&self, change: MailboxChange) -> SinkFuture<'_, ()>;
}

/// A message the sink holds, as [`MailSink::known`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownMail {
    /// Where it is.
    pub place: Place,
    /// `\Seen`, as last known.
    pub seen: bool,
    /// `\Flagged`, as last known.
    pub flagged: bool,
}

/// What changed in the mailbox about a message the sink holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailboxChange {
    /// Its flags are now these.
    Flags {
        /// The user, lower-cased.
        mailbox: String,
        /// The folder.
        folder: String,
        /// Where it is.
        place: Place,
        /// `\Seen`.
        seen: bool,
        /// `\Flagged`.
        flagged: bool,
    },
    /// It is no longer in the folder (expunged, deleted, or moved elsewhere).
    Gone {
        /// The user, lower-cased.
        mailbox: String,
        /// The folder.
        folder: String,
        /// Where it was.
        place: Place,
    },
}

/// An activation request found in a user's mailbox (and removed from it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivationMail {
    /// The watched user's address, lower-cased: whose mailbox it was found in.
    pub mailbox: String,
    /// The `ETP.DAT` attachment, decoded (base64 and the like undone); at most
    /// [`MailboxConfig::max_etp_dat_bytes`].
    pub etp_dat: Vec<u8>,
    /// The message's `Message-ID`, without angle brackets, if it had one.
    pub message_id: Option<String>,
    /// The first address of its `From`, if it had one.
    pub from: Option<String>,
}

/// Where the mailboxes are.
#[derive(Debug, Clone)]
pub enum MailboxSource {
    /// An IMAP server (Dovecot, Stalwart, Exchange, …).
    Imap(ImapConfig),
    /// Maildirs on local disk (the embedded default).
    Maildir(MaildirConfig),
}

/// What a [`Watchers`] watches and its limits.
#[derive(Debug, Clone)]
pub struct MailboxConfig {
    /// The mail store.
    pub source: MailboxSource,
    /// A message larger than this is not downloaded nor parsed (logged, left in the mailbox).
    /// Default [`DEFAULT_MAX_MESSAGE_BYTES`].
    pub max_message_bytes: u64,
    /// An `ETP.DAT` larger than this is ignored (logged) and its message removed. Default
    /// [`DEFAULT_MAX_ETP_DAT_BYTES`].
    pub max_etp_dat_bytes: usize,
}

impl MailboxConfig {
    /// `source` with the default limits.
    pub fn new(source: MailboxSource) -> MailboxConfig {
        MailboxConfig {
            source,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_etp_dat_bytes: DEFAULT_MAX_ETP_DAT_BYTES,
        }
    }

    fn limits(&self) -> scan::Limits {
        scan::Limits {
            max_message_bytes: self.max_message_bytes,
            max_etp_dat_bytes: self.max_etp_dat_bytes,
        }
    }
}

/// How one mailbox's watcher is doing, for the console and for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatcherState {
    /// Connecting, logging in, or looking at what is already in the mailbox.
    Starting,
    /// Up to date and waiting for new mail (IMAP IDLE, or inotify).
    Watching,
    /// The last attempt failed; it tries again after a pause.
    Retrying {
        /// Why, in an operator's words.
        error: String,
        /// Failed attempts in a row.
        attempts: u32,
    },
    /// Stopped for good: unwatched, shut down, or the receiver of the channel is gone.
    Stopped,
}

/// Why [`Watchers::watch`] refused a mailbox.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The address cannot name a mailbox (empty, or characters that are not allowed in a
    /// path or an IMAP login).
    #[error("{0:?} is not a mailbox address this server can watch")]
    BadAddress(String),
    /// The Maildir could not be created.
    #[error("cannot create the Maildir {path}: {source}")]
    Maildir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The mailbox watchers of one mail store: [`Watchers::watch`] starts one for a user,
/// [`Watchers::unwatch`] stops it, [`Watchers::shutdown`] stops them all. Needs a tokio runtime.
pub struct Watchers {
    config: MailboxConfig,
    sink: Option<Arc<dyn MailSink>>,
    store: Store,
    tx: mpsc::Sender<ActivationMail>,
    running: Mutex<HashMap<String, Running>>,
}

/// The source, ready to watch.
enum Store {
    Imap(Arc<ImapConfig>),
    Maildir(maildir::Shared),
}

struct Running {
    cancel: CancellationToken,
    task: JoinHandle<()>,
    state: watch::Receiver<WatcherState>,
    poke: Arc<tokio::sync::Notify>,
}

impl fmt::Debug for Watchers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watchers")
            .field("config", &self.config)
            .field("watched", &self.watched())
            .finish_non_exhaustive()
    }
}

/// What every watcher task gets.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// The lower-cased address.
    pub email: String,
    pub limits: scan::Limits,
    pub tx: mpsc::Sender<ActivationMail>,
    /// Where other new mail goes, if anywhere.
    pub sink: Option<Arc<dyn MailSink>>,
    pub cancel: CancellationToken,
    pub state: Arc<watch::Sender<WatcherState>>,
    /// Woken by [`Watchers::poke`]: look at the mailbox now (the mail server's push hook).
    pub poke: Arc<tokio::sync::Notify>,
}

impl Context {
    fn set_state(&self, state: WatcherState) {
        self.state.send_replace(state);
    }

    /// Hands `mail` to the channel; `false` when the watcher must stop (cancelled, or the
    /// receiver is gone).
    async fn deliver(&self, mail: ActivationMail) -> bool {
        tokio::select! {
            sent = self.tx.send(mail) => match sent {
                Ok(()) => true,
                Err(_) => {
                    tracing::warn!(mailbox = %self.email, "the activation service no longer listens: watcher stops");
                    false
                }
            },
            () = self.cancel.cancelled() => false,
        }
    }
}

impl Watchers {
    /// Watchers of `config`'s store, sending what they find to `tx`. Watches nothing yet.
    pub fn new(config: MailboxConfig, tx: mpsc::Sender<ActivationMail>) -> Watchers {
        let store = match &config.source {
            MailboxSource::Maildir(m) => Store::Maildir(maildir::Shared::new(m.clone())),
            MailboxSource::Imap(c) => Store::Imap(Arc::new(c.clone())),
        };
        Watchers {
            config,
            sink: None,
            store,
            tx,
            running: Mutex::new(HashMap::new()),
        }
    }

    /// The same watchers, offering every new message that is not an activation request to
    /// `sink` (push mail). Call before watching anything.
    pub fn with_sink(mut self, sink: Arc<dyn MailSink>) -> Watchers {
        self.sink = Some(sink);
        self
    }

    /// Connects to the IMAP server, logs in for `email` as `config` says and selects its INBOX,
    /// then logs out: the start-up check of `bramble serve`. Nothing is read or changed.
    ///
    /// # Errors
    /// An [`ImapError`] saying which step failed: the server is unreachable, TLS failed, the
    /// login was refused (naming the account to check), INBOX cannot be selected (no such
    /// mailbox or no rights), or the server broke the protocol or did not answer in time.
    pub async fn check_login(config: &ImapConfig, email: &str) -> Result<MailboxInfo, ImapError> {
        imap::check_login(
            config,
            &normalize(email).unwrap_or_else(|_| email.to_owned()),
        )
        .await
    }

    /// Starts watching `email`'s mailbox (its address is lower-cased first). Returns `false` if
    /// it was already watched. For a Maildir store its directories are created here.
    ///
    /// # Errors
    /// [`WatchError::BadAddress`] for an address that cannot name a mailbox;
    /// [`WatchError::Maildir`] when the Maildir cannot be created.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn watch(&self, email: &str) -> Result<bool, WatchError> {
        let email = normalize(email)?;
        let mut running = self.lock();
        if let Some(r) = running.get(&email)
            && !r.task.is_finished()
        {
            return Ok(false);
        }
        let (state_tx, state_rx) = watch::channel(WatcherState::Starting);
        let cx = Context {
            email: email.clone(),
            limits: self.config.limits(),
            tx: self.tx.clone(),
            sink: self.sink.clone(),
            cancel: CancellationToken::new(),
            state: Arc::new(state_tx),
            poke: Arc::new(tokio::sync::Notify::new()),
        };
        let cancel = cx.cancel.clone();
        let poke = cx.poke.clone();
        let task = match &self.store {
            Store::Maildir(shared) => {
                let watch = shared.prepare(&email)?;
                tokio::spawn(maildir::run(cx, watch))
            }
            Store::Imap(cfg) => tokio::spawn(imap::run(cx, cfg.clone())),
        };
        tracing::debug!(mailbox = %email, "watching");
        running.insert(
            email,
            Running {
                cancel,
                task,
                state: state_rx,
                poke,
            },
        );
        Ok(true)
    }

    /// Stops watching `email`; returns `false` if it was not watched. Waits (up to 5 s) for the
    /// watcher to finish what it was doing.
    pub async fn unwatch(&self, email: &str) -> bool {
        let Ok(email) = normalize(email) else {
            return false;
        };
        let Some(r) = self.lock().remove(&email) else {
            return false;
        };
        if let Store::Maildir(shared) = &self.store {
            shared.forget(&email);
        }
        stop(&email, r).await;
        true
    }

    /// Tells `email`'s watcher to look at the mailbox now instead of waiting for IMAP IDLE
    /// (which Dovecot holds for 500 ms): what the mail server's push hook calls. Returns
    /// whether that mailbox is watched.
    pub fn poke(&self, email: &str) -> bool {
        let Ok(email) = normalize(email) else {
            return false;
        };
        match self.lock().get(&email) {
            Some(r) => {
                r.poke.notify_one();
                true
            }
            None => false,
        }
    }

    /// The addresses being watched.
    pub fn watched(&self) -> Vec<String> {
        let mut v: Vec<String> = self.lock().keys().cloned().collect();
        v.sort();
        v
    }

    /// How many mailboxes are watched, and how many of those watchers are up to date and
    /// waiting for mail ([`WatcherState::Watching`]).
    pub fn counts(&self) -> (usize, usize) {
        let all = self.lock();
        let watching = all
            .values()
            .filter(|r| *r.state.borrow() == WatcherState::Watching)
            .count();
        (all.len(), watching)
    }

    /// How `email`'s watcher is doing; `None` if it is not watched.
    pub fn state(&self, email: &str) -> Option<WatcherState> {
        let email = normalize(email).ok()?;
        self.lock().get(&email).map(|r| r.state.borrow().clone())
    }

    /// Waits until `email`'s watcher is [`WatcherState::Watching`] (up to date with its
    /// mailbox); `false` if it is not watched, stopped, or `timeout` passed first.
    pub async fn wait_watching(&self, email: &str, timeout: Duration) -> bool {
        let Ok(email) = normalize(email) else {
            return false;
        };
        let Some(mut rx) = self.lock().get(&email).map(|r| r.state.clone()) else {
            return false;
        };
        tokio::time::timeout(
            timeout,
            rx.wait_for(|s| matches!(s, WatcherState::Watching | WatcherState::Stopped)),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .is_some_and(|s| *s == WatcherState::Watching)
    }

    /// Stops every watcher and waits (up to 5 s each) for them to finish.
    pub async fn shutdown(self) {
        let all: Vec<(String, Running)> = self.lock().drain().collect();
        for (_, r) in &all {
            r.cancel.cancel();
        }
        for (email, r) in all {
            stop(&email, r).await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Dropping the watchers without [`Watchers::shutdown`] still stops every task (without
/// waiting for them).
impl Drop for Watchers {
    fn drop(&mut self) {
        for r in self.lock().values() {
            r.cancel.cancel();
        }
    }
}

async fn stop(email: &str, r: Running) {
    r.cancel.cancel();
    let abort = r.task.abort_handle();
    if tokio::time::timeout(Duration::from_secs(5), r.task)
        .await
        .is_err()
    {
        tracing::warn!(mailbox = %email, "watcher did not stop within 5 s: aborted");
        abort.abort();
    }
}

/// Lower-cases and checks an address: it becomes a directory name and part of an IMAP login.
fn normalize(email: &str) -> Result<String, WatchError> {
    let e = email.trim().to_lowercase();
    let ok = !e.is_empty()
        && e.len() <= 254
        && !e.starts_with('.')
        && e.contains('@')
        && !e
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '/' | '\\' | '"' | '*'));
    if ok {
        Ok(e)
    } else {
        Err(WatchError::BadAddress(email.to_owned()))
    }
}

/// Exponential back-off with jitter, for reconnecting.
#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let min = min.max(Duration::from_millis(1));
        Backoff {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The pause before the next attempt: the current step, with ±25 % jitter; doubles the
    /// step.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        jitter(base)
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// `d` scaled by a random factor in [0.75, 1.25].
pub(crate) fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.75..=1.25))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_and_lower_cased() {
        assert_eq!(
            normalize(" Bob@Example.TEST ").ok().as_deref(),
            Some("bob@example.test")
        );
        for bad in [
            "", "bob", "../x@y", "a/b@c", "a*b@c", "a b@c", ".x@y", "a\0@b",
        ] {
            assert!(normalize(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn backoff_grows_to_its_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let d: Vec<Duration> = (0..5).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(75) && d[0] <= Duration::from_millis(125));
        assert!(d[4] >= Duration::from_millis(300) && d[4] <= Duration::from_millis(500));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(125));
    }
}
