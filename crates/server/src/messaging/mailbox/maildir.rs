//! The Maildir watcher: the embedded mail store on local disk.
//!
//! Layout: `ROOT/<lower-cased email>/Maildir/{new,cur,tmp}` — the layout Dovecot uses with
//! `mail_location = maildir:~/Maildir` and homes under `ROOT`, and the one the embedded relay
//! delivers into. The directories are created when watching starts. Writers follow the Maildir
//! rule: write the file in `tmp/`, then rename it into `new/`; a file in `new/` or `cur/` is
//! taken as complete. A message's identity is its file name up to the first `:` (the part that
//! stays when a reader moves it from `new/` to `cur/` and adds flags). Names starting with `.`,
//! and anything that is not a regular file (symlinks included), are ignored.
//!
//! Each watched mailbox has a task that looks through `new/` and `cur/` when it starts, when
//! inotify reports a change in either (one inotify instance serves all mailboxes of a
//! [`super::Watchers`]: the kernel allows only 128 instances per user), and every
//! [`MaildirConfig::rescan_interval`] as a safety net (and the only trigger when inotify cannot
//! be had). A file is read once per task (bounded by the size limit); an activation request is
//! handed over, then its file deleted. Each look then compares the messages the sink holds with
//! the files (see [`super`]: reconciliation): flags from the info part (`:2,` `S` seen, `F`
//! flagged; `T` trashed counts as gone), and a base name found in neither `new/` nor `cur/`
//! (twice in a row) is gone.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use notify::event::{AccessKind, EventKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;

use super::scan::{self, Verdict};
use super::{ActivationMail, Context, WatchError, WatcherState, jitter};

/// Where the Maildirs are.
#[derive(Debug, Clone)]
pub struct MaildirConfig {
    /// `ROOT` in `ROOT/<email>/Maildir/new`.
    pub root: PathBuf,
    /// How often every mailbox is looked through even without an inotify event. Default 60 s.
    pub rescan_interval: Duration,
}

impl MaildirConfig {
    /// Maildirs under `root`, rescanned every 60 s.
    pub fn new(root: impl Into<PathBuf>) -> MaildirConfig {
        MaildirConfig {
            root: root.into(),
            rescan_interval: Duration::from_secs(60),
        }
    }
}

type Pokes = Arc<Mutex<HashMap<String, Arc<Notify>>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What all Maildir watchers of one [`super::Watchers`] share: one inotify instance, and the
/// way from an event's path to the mailbox's task.
pub(crate) struct Shared {
    cfg: MaildirConfig,
    pokes: Pokes,
    /// Made on first use; `None` inside after it could not be made (rescans only).
    inotify: Mutex<Option<Option<RecommendedWatcher>>>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// One mailbox's directories and its wake-up.
#[derive(Debug)]
pub(crate) struct MailboxWatch {
    maildir: PathBuf,
    poke: Arc<Notify>,
    rescan: Duration,
}

impl Shared {
    pub fn new(cfg: MaildirConfig) -> Shared {
        Shared {
            cfg,
            pokes: Arc::default(),
            inotify: Mutex::new(None),
        }
    }

    fn maildir(&self, email: &str) -> PathBuf {
        self.cfg.root.join(email).join("Maildir")
    }

    /// Creates `email`'s Maildir and watches its `new/` and `cur/`.
    pub fn prepare(&self, email: &str) -> Result<MailboxWatch, WatchError> {
        let maildir = self.maildir(email);
        for sub in ["new", "cur", "tmp"] {
            let path = maildir.join(sub);
            std::fs::create_dir_all(&path)
                .map_err(|source| WatchError::Maildir { path, source })?;
        }
        let poke = Arc::new(Notify::new());
        lock(&self.pokes).insert(email.to_owned(), poke.clone());
        let mut inotify = lock(&self.inotify);
        let watcher = inotify.get_or_insert_with(|| self.make_watcher());
        if let Some(w) = watcher {
            for sub in ["new", "cur"] {
                let dir = maildir.join(sub);
                if let Err(e) = w.watch(&dir, RecursiveMode::NonRecursive) {
                    tracing::warn!(mailbox = %email, "cannot watch {} with inotify ({e}): it is looked through every {:?} only", dir.display(), self.cfg.rescan_interval);
                }
            }
        }
        Ok(MailboxWatch {
            maildir,
            poke,
            rescan: self.cfg.rescan_interval,
        })
    }

    /// Stops reporting `email`'s changes.
    pub fn forget(&self, email: &str) {
        lock(&self.pokes).remove(email);
        let maildir = self.maildir(email);
        if let Some(Some(w)) = lock(&self.inotify).as_mut() {
            for sub in ["new", "cur"] {
                let _ = w.unwatch(&maildir.join(sub));
            }
        }
    }

    fn make_watcher(&self) -> Option<RecommendedWatcher> {
        let root = self.cfg.root.clone();
        let pokes = self.pokes.clone();
        let handler = move |event: notify::Result<notify::Event>| {
            let pokes = lock(&pokes);
            match event {
                Ok(event) => {
                    if matches!(
                        event.kind,
                        EventKind::Access(AccessKind::Open(_) | AccessKind::Read)
                    ) {
                        return;
                    }
                    for path in &event.paths {
                        if let Some(poke) = mailbox_of(&root, path).and_then(|m| pokes.get(m)) {
                            poke.notify_one();
                        }
                    }
                }
                // e.g. the kernel's queue overflowed: everyone looks
                Err(_) => pokes.values().for_each(|p| p.notify_one()),
            }
        };
        match notify::recommended_watcher(handler) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(
                    "no inotify for the Maildirs under {} ({e}): they are looked through every {:?} only",
                    self.cfg.root.display(),
                    self.cfg.rescan_interval
                );
                None
            }
        }
    }
}

/// `ROOT/<email>/…` → `<email>`.
fn mailbox_of<'p>(root: &Path, path: &'p Path) -> Option<&'p str> {
    match path.strip_prefix(root).ok()?.components().next()? {
        Component::Normal(name) => name.to_str(),
        _ => None,
    }
}

/// The task behind [`super::Watchers::watch`] for a Maildir store.
pub(crate) async fn run(cx: Context, w: MailboxWatch) {
    // base names (up to ':') looked at and left alone
    let mut known: HashSet<OsString> = HashSet::new();
    let mut failures = 0u32;
    loop {
        match look(&cx, &w, &mut known).await {
            Ok(true) => {
                failures = 0;
                cx.set_state(WatcherState::Watching);
            }
            Ok(false) => break,
            Err(e) => {
                failures += 1;
                tracing::warn!(mailbox = %cx.email, "reading the Maildir {}: {e}", w.maildir.display());
                cx.set_state(WatcherState::Retrying {
                    error: format!("reading the Maildir {}: {e}", w.maildir.display()),
                    attempts: failures,
                });
            }
        }
        tokio::select! {
            () = w.poke.notified() => {}
            () = tokio::time::sleep(jitter(w.rescan)) => {}
            () = cx.cancel.cancelled() => break,
        }
    }
    cx.set_state(WatcherState::Stopped);
    tracing::debug!(mailbox = %cx.email, "Maildir watcher stopped");
}

/// Looks through `new/` and `cur/`. `Ok(false)`: stop.
async fn look(cx: &Context, w: &MailboxWatch, known: &mut HashSet<OsString>) -> io::Result<bool> {
    let mut present = HashSet::new();
    let mut fresh: Vec<(OsString, PathBuf, OsString)> = Vec::new();
    let mut files = HashMap::new();
    for sub in ["new", "cur"] {
        let dir = w.maildir.join(sub);
        let mut entries = tokio::fs::read_dir(&dir).await?;
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name();
            let Some((base, flags)) = listed(&name) else {
                continue;
            };
            let base = OsString::from(base);
            present.insert(base.clone());
            // a name in both (a reader moving it right now): cur/'s, listed last, counts
            files.insert(base.clone(), flags);
            if !known.contains(&base) {
                fresh.push((name, entry.path(), base));
            }
        }
    }
    known.retain(|b| present.contains(b));
    // Maildir names start with the delivery time: oldest first
    fresh.sort();
    let wants = match &cx.sink {
        Some(sink) if fresh.iter().any(|(_, p, _)| in_new(p)) => sink.wants(&cx.email).await,
        _ => false,
    };
    for (_, path, base) in fresh {
        if cx.cancel.is_cancelled() {
            return Ok(false);
        }
        let push = cx.sink.is_some() && in_new(&path);
        match look_at(cx, &path, push.then_some(wants)).await {
            Ok(Seen::Keep) => {
                known.insert(base);
            }
            Ok(Seen::Removed | Seen::Gone | Seen::Retry) => {}
            Ok(Seen::Stop) => return Ok(false),
            Err(e) => {
                tracing::warn!(mailbox = %cx.email, "{}: {e}", path.display());
                known.insert(base);
            }
        }
    }
    reconcile(cx, w, &files).await;
    Ok(true)
}

/// A directory entry's base name and flags; `None` for a name to ignore (starting with `.`).
fn listed(name: &std::ffi::OsStr) -> Option<(String, FileFlags)> {
    let bytes = name.as_encoded_bytes();
    if bytes.starts_with(b".") {
        return None;
    }
    let base_len = bytes.iter().position(|&b| b == b':').unwrap_or(bytes.len());
    let base = String::from_utf8_lossy(&bytes[..base_len]).into_owned();
    Some((base, FileFlags::of(&name.to_string_lossy())))
}

/// The flags in a Maildir file name's info part (`…:2,FST`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct FileFlags {
    /// `S`: seen.
    seen: bool,
    /// `F`: flagged.
    flagged: bool,
    /// `T`: trashed (IMAP's `\Deleted`), to be removed.
    trashed: bool,
}

impl FileFlags {
    fn of(name: &str) -> FileFlags {
        match name.split_once(":2,") {
            Some((_, f)) => FileFlags {
                seen: f.contains('S'),
                flagged: f.contains('F'),
                trashed: f.contains('T'),
            },
            None => FileFlags::default(),
        }
    }
}

/// At most this many of the sink's messages compared per look.
const KNOWN_LIMIT: u32 = 5000;
/// At most this many changes passed to the sink per look; the rest in the next look, right
/// after.
const CHANGES_PER_LOOK: usize = 500;

/// Reconciliation, server to device: compares the messages the sink holds with `files` (base
/// name → flags, as just listed) and tells it what was read, flagged, trashed or removed.
/// A name missing from the listing is looked for once more before it counts as gone (a
/// rename in `cur/`, which is how a flag changes, may hide a file from a listing). Failures
/// are logged; the next look tries again.
async fn reconcile(cx: &Context, w: &MailboxWatch, files: &HashMap<OsString, FileFlags>) {
    let Some(sink) = &cx.sink else {
        return;
    };
    let known = sink.known(&cx.email, "INBOX", KNOWN_LIMIT).await;
    if known.is_empty() {
        return;
    }
    let mut changes = Vec::new();
    let mut missing = Vec::new();
    for k in known {
        let super::Place::Maildir { name } = k.place else {
            continue;
        };
        match files.get(std::ffi::OsStr::new(&name)) {
            None => missing.push(name),
            Some(f) if f.trashed => changes.push(gone(cx, name)),
            Some(f) if (f.seen, f.flagged) != (k.seen, k.flagged) => {
                changes.push(super::MailboxChange::Flags {
                    mailbox: cx.email.clone(),
                    folder: "INBOX".to_owned(),
                    place: super::Place::Maildir { name },
                    seen: f.seen,
                    flagged: f.flagged,
                });
            }
            Some(_) => {}
        }
    }
    if !missing.is_empty() {
        match list_again(w).await {
            Ok(now) => changes.extend(
                missing
                    .into_iter()
                    .filter(|name| now.get(name).is_none_or(|f| f.trashed))
                    .map(|name| gone(cx, name)),
            ),
            Err(e) => {
                tracing::warn!(mailbox = %cx.email, "reading the Maildir {} again: {e}; removed messages reach the device after the next look", w.maildir.display());
            }
        }
    }
    if changes.len() > CHANGES_PER_LOOK {
        changes.truncate(CHANGES_PER_LOOK);
        w.poke.notify_one();
    }
    for change in changes {
        if cx.cancel.is_cancelled() {
            return;
        }
        tracing::trace!(mailbox = %cx.email, ?change, "changed in the mailbox");
        sink.changed(change).await;
    }
}

fn gone(cx: &Context, name: String) -> super::MailboxChange {
    super::MailboxChange::Gone {
        mailbox: cx.email.clone(),
        folder: "INBOX".to_owned(),
        place: super::Place::Maildir { name },
    }
}

/// `new/` and `cur/` listed again: base name → flags.
async fn list_again(w: &MailboxWatch) -> io::Result<HashMap<String, FileFlags>> {
    let mut files = HashMap::new();
    for sub in ["new", "cur"] {
        let mut entries = tokio::fs::read_dir(w.maildir.join(sub)).await?;
        while let Some(entry) = entries.next_entry().await? {
            if let Some((base, flags)) = listed(&entry.file_name()) {
                files.insert(base, flags);
            }
        }
    }
    Ok(files)
}

enum Seen {
    /// Left where it is (and not to be read again).
    Keep,
    /// An activation request, handed over and deleted.
    Removed,
    /// The file went away before it was read.
    Gone,
    /// The watcher is to stop.
    Stop,
    /// The sink could not take it: look at it again next time.
    Retry,
}

/// Whether `path` is in a Maildir's `new/`.
fn in_new(path: &Path) -> bool {
    path.parent()
        .and_then(Path::file_name)
        .is_some_and(|n| n == "new")
}

/// `new/NAME` → `cur/NAME:2,` (what a mail client does with a message it has seen arrive;
/// no flags set).
async fn move_to_cur(cx: &Context, path: &Path) -> io::Result<()> {
    let (Some(name), Some(new)) = (path.file_name(), path.parent()) else {
        return Ok(());
    };
    let Some(maildir) = new.parent() else {
        return Ok(());
    };
    let mut target = name.to_os_string();
    if !target.as_encoded_bytes().contains(&b':') {
        target.push(":2,");
    }
    match tokio::fs::rename(path, maildir.join("cur").join(target)).await {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            tracing::warn!(mailbox = %cx.email, path = %path.display(), "cannot move the message to cur/: {e}");
            Err(e)
        }
        _ => Ok(()),
    }
}

/// The flags in a Maildir file name's info part (`…:2,FS`): (seen, flagged).
fn maildir_flags(path: &Path) -> (bool, bool) {
    let f = path
        .file_name()
        .map(|n| FileFlags::of(&n.to_string_lossy()))
        .unwrap_or_default();
    (f.seen, f.flagged)
}

/// Offers a message in `new/` to the sink (when it wants this user's mail), then moves it to
/// `cur/`.
async fn offer(
    cx: &Context,
    path: &Path,
    raw: Vec<u8>,
    size: u64,
    wants: bool,
) -> io::Result<Seen> {
    let Some(sink) = &cx.sink else {
        return Ok(Seen::Keep);
    };
    if wants {
        let name = path
            .file_name()
            .map(|n| {
                let n = n.to_string_lossy();
                n.split(':').next().unwrap_or_default().to_owned()
            })
            .unwrap_or_default();
        let (seen, flagged) = maildir_flags(path);
        let mail = super::NewMail {
            mailbox: cx.email.clone(),
            folder: "INBOX".to_owned(),
            place: super::Place::Maildir { name },
            size,
            raw,
            seen,
            flagged,
        };
        if let Err(e) = sink.offer(mail).await {
            tracing::warn!(mailbox = %cx.email, path = %path.display(), "new mail not taken yet: {e}");
            return Ok(Seen::Retry);
        }
    }
    move_to_cur(cx, path).await?;
    Ok(Seen::Keep)
}

/// `push`: `Some(wants)` for a file in `new/` when push mail is on.
async fn look_at(cx: &Context, path: &Path, push: Option<bool>) -> io::Result<Seen> {
    let max = if push.is_some() {
        cx.limits.max_message_bytes.max(super::PUSH_FETCH_BYTES)
    } else {
        cx.limits.max_message_bytes
    };
    let meta = match tokio::fs::symlink_metadata(path).await {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Seen::Gone),
        Err(e) => return Err(e),
    };
    if !meta.is_file() {
        return Ok(Seen::Keep);
    }
    if meta.len() > max && push.is_none() {
        tracing::warn!(mailbox = %cx.email, path = %path.display(), size = meta.len(), "message over the size limit of {max} bytes: not read, left in the mailbox");
        return Ok(Seen::Keep);
    }
    let file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Seen::Gone),
        Err(e) => return Err(e),
    };
    let mut raw = Vec::with_capacity(usize::try_from(meta.len().min(max)).unwrap_or(0));
    let cap = if push.is_some() {
        max
    } else {
        max.saturating_add(1)
    };
    file.take(cap).read_to_end(&mut raw).await?;
    let verdict = scan::inspect(&raw, &cx.limits);
    if let Some(wants) = push
        && matches!(
            verdict,
            Verdict::Ordinary | Verdict::TooLarge { .. } | Verdict::Unparseable
        )
    {
        return offer(cx, path, raw, meta.len(), wants).await;
    }
    drop(raw);
    let remove = |what: &'static str| async move {
        match tokio::fs::remove_file(path).await {
            Ok(()) => Ok(Seen::Removed),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Seen::Removed),
            Err(e) => {
                tracing::error!(mailbox = %cx.email, path = %path.display(), "cannot delete the {what}: {e}");
                Ok(Seen::Keep)
            }
        }
    };
    match verdict {
        Verdict::Ordinary => Ok(Seen::Keep),
        Verdict::TooLarge { size } => {
            tracing::warn!(mailbox = %cx.email, path = %path.display(), size, "message over the size limit of {max} bytes: left in the mailbox");
            Ok(Seen::Keep)
        }
        Verdict::Unparseable => {
            tracing::warn!(mailbox = %cx.email, path = %path.display(), "message does not parse as mail: left in the mailbox");
            Ok(Seen::Keep)
        }
        Verdict::OversizedEtpDat {
            size,
            message_id,
            from,
        } => {
            tracing::warn!(mailbox = %cx.email, path = %path.display(), size, ?message_id, ?from,
                "ETP.DAT over the limit of {} bytes: ignored, message removed", cx.limits.max_etp_dat_bytes);
            remove("message with an oversized ETP.DAT").await
        }
        Verdict::Activation {
            etp_dat,
            message_id,
            from,
            count,
        } => {
            if count > 1 {
                tracing::warn!(mailbox = %cx.email, path = %path.display(), count, "message has {count} ETP.DAT attachments: only the first is used");
            }
            tracing::info!(mailbox = %cx.email, path = %path.display(), ?message_id, ?from, bytes = etp_dat.len(), "activation request mail found");
            let mail = ActivationMail {
                mailbox: cx.email.clone(),
                etp_dat,
                message_id,
                from,
            };
            if !cx.deliver(mail).await {
                return Ok(Seen::Stop);
            }
            remove("activation request mail (it was handed over)").await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_paths_name_their_mailbox() {
        let root = Path::new("/srv/mail");
        assert_eq!(
            mailbox_of(
                root,
                Path::new("/srv/mail/bob@example.test/Maildir/new/1.x")
            ),
            Some("bob@example.test")
        );
        assert_eq!(mailbox_of(root, Path::new("/elsewhere/x")), None);
        assert_eq!(mailbox_of(root, Path::new("/srv/mail")), None);
    }

    #[test]
    fn file_names_give_base_and_flags() {
        let l = |n: &str| listed(std::ffi::OsStr::new(n));
        let f = |seen, flagged, trashed| FileFlags {
            seen,
            flagged,
            trashed,
        };
        assert_eq!(
            l("1001.a.host:2,FS"),
            Some(("1001.a.host".into(), f(true, true, false)))
        );
        assert_eq!(
            l("1001.a.host:2,ST"),
            Some(("1001.a.host".into(), f(true, false, true)))
        );
        assert_eq!(
            l("1002.b.host"),
            Some(("1002.b.host".into(), FileFlags::default()))
        );
        assert_eq!(l(".hidden"), None);
    }
}
