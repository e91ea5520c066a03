//! One-shot operations on one message of a user's mailbox, for the forwarding agent: the bytes
//! of a message it forwarded to a phone (for "More", attachments, and the original of a reply
//! or forward), the phone's changes applied to the mailbox (read/unread, flagged, delete, move
//! to another folder), and the copy of sent mail filed in "Sent".
//!
//! A message is named by a [`Locator`]; [`MailAccess`] works on the same store the watchers
//! watch ([`MailboxSource`]):
//!
//! - IMAP: every call connects, logs in (the service account `EMAIL*service`, or the user's
//!   own password, as [`ImapConfig::auth`] says), selects the locator's folder, checks that its
//!   UIDVALIDITY is the locator's (else the message is gone), does its work by UID, and logs
//!   out. There is no session cache: a cached session can go stale (the server's autologout, a
//!   restart) and would need a retry path, and each cached session holds one of the few
//!   connections a mail server allows per user (Dovecot: 10 by default, one of them the
//!   watcher's IDLE). Folder names are UTF-8 here and sent as modified UTF-7 (RFC 3501 5.1.3),
//!   quoted by async-imap. A move uses `UID MOVE` (RFC 6851) when offered, else `UID COPY`
//!   then delete; the new UID comes from the `COPYUID` response code (trusted only when the
//!   server announces UIDPLUS, whose code it is), else from a `UID SEARCH HEADER Message-ID`
//!   in the target folder (the highest UID found). A delete is `UID STORE +FLAGS
//!   (\Deleted)` then `UID EXPUNGE` of that UID; a server without UIDPLUS gets a plain
//!   `EXPUNGE`, which also removes other messages already flagged `\Deleted` in that folder.
//! - Maildir (the embedded store): INBOX is `ROOT/<email>/Maildir`, another folder the
//!   Maildir++ subfolder `ROOT/<email>/Maildir/.<folder>` (levels separated by `.`, as in
//!   `Archive.2024`; non-ASCII names in modified UTF-7, as Dovecot stores them). A message is
//!   its file's base name (up to the first `:`) in `new/` or `cur/`; its flags are the info
//!   part `:2,` + sorted letters (`S` seen, `F` flagged, `T` trashed, others kept as they
//!   are). Setting flags renames the file into `cur/`; delete removes it; move renames it into
//!   the other folder's `cur/` under the same base name; append writes `tmp/` then renames into
//!   `cur/` (`:2,S`) or `new/`. Symbolic links are never followed (a linked directory or file
//!   is an error, or is not a message).
//!
//! "Gone" (the message was expunged or moved away by someone else, its folder no longer exists,
//! or the folder's UIDVALIDITY changed) is not an error: `Ok(None)` or `Ok(false)`.
//!
//! Owns: reading and changing single messages named by a locator, creating folders, filing
//! copies. Must not touch: what is forwarded and the RefID map (the forwarding agent's), the
//! watchers' state, SQL, the relay link.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_imap::error::Error as ProtoError;
use async_imap::imap_proto::rfc4315::UidSetMember;
use async_imap::imap_proto::{Response, ResponseCode, Status};
use async_imap::types::{Capabilities, Flag};
use futures::TryStreamExt;

use super::imap::{self, Session};
use super::{ImapConfig, ImapError, MailboxSource};

/// The longest folder name accepted, in bytes of UTF-8.
pub const MAX_FOLDER_BYTES: usize = 255;
/// The largest message [`MailAccess::append`] files: 32 MiB.
pub const MAX_APPEND_BYTES: usize = 32 * 1024 * 1024;
/// The longest Maildir file base name accepted.
const MAX_NAME_BYTES: usize = 255;
/// The longest Message-ID searched for, bytes.
const MAX_MESSAGE_ID: usize = 998;
/// How often a Maildir operation looks again when the file was renamed under it.
const MAILDIR_ATTEMPTS: usize = 3;

/// Where one message is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Locator {
    /// A message on an IMAP server.
    Imap {
        /// The folder, UTF-8 (`INBOX`, `Sent`, `Archive.2024`).
        folder: String,
        /// The folder's UIDVALIDITY when the UID was learnt.
        uid_validity: u32,
        /// The message's UID in that folder.
        uid: u32,
    },
    /// A message in the embedded Maildir store.
    Maildir {
        /// The folder, UTF-8 (`INBOX`, or a Maildir++ subfolder's name such as `Archive.2024`).
        folder: String,
        /// The Maildir file's base name (up to the first ':'), found in new/ or cur/.
        name: String,
    },
}

impl Locator {
    /// The folder it is in.
    pub fn folder(&self) -> &str {
        match self {
            Locator::Imap { folder, .. } | Locator::Maildir { folder, .. } => folder,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Locator::Imap { .. } => "an IMAP mailbox",
            Locator::Maildir { .. } => "the embedded Maildir store",
        }
    }
}

/// A message's bytes, as [`MailAccess::fetch`] read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The message, or its first `max_bytes` when `truncated`.
    pub raw: Vec<u8>,
    /// The message is longer than the limit asked for: `raw` is only its beginning.
    pub truncated: bool,
    /// Its whole size in bytes when the store said (IMAP `RFC822.SIZE`, the file's size).
    pub size: Option<u64>,
}

/// A message's flags as the phone sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    /// Read (`\Seen`; Maildir `S`).
    pub seen: bool,
    /// Flagged for follow-up (`\Flagged`; Maildir `F`).
    pub flagged: bool,
}

/// What became of a message [`MailAccess::move_to`] moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moved {
    /// It is now there.
    To(Locator),
    /// It was moved, but its new UID could not be learnt: the server sent no `COPYUID`, and the
    /// message has no Message-ID or none was found in the target folder.
    Untracked,
}

/// Why an operation on a mailbox failed. "The message is gone" is not an error.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The address cannot name a mailbox (empty, or characters that are not allowed in a path
    /// or an IMAP login).
    #[error("{0:?} is not a mailbox address this server can open")]
    BadAddress(String),
    /// The folder name cannot be used.
    #[error("the folder name {folder:?} cannot be used: {reason}")]
    BadFolder {
        /// The name as given.
        folder: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A Maildir locator's name is not the base name of a message file (empty, too long, '.'
    /// or '..', or it holds '/', ':' or a control character).
    #[error("{0:?} is not the name of a message file in a Maildir")]
    BadName(String),
    /// The locator is for another kind of mail store than the one in use: the server's
    /// `[server.mail]` store changed since the message was forwarded.
    #[error(
        "the message was recorded in {locator}, but this server now uses {store}; it cannot be found there"
    )]
    WrongStore {
        /// "an IMAP mailbox" or "the embedded Maildir store".
        locator: &'static str,
        /// The same for the store in use.
        store: &'static str,
    },
    /// The message to file is larger than [`MAX_APPEND_BYTES`].
    #[error("the message is too large to file in {folder} ({size} bytes; at most {max})")]
    TooLarge {
        /// The folder.
        folder: String,
        /// Its size.
        size: usize,
        /// [`MAX_APPEND_BYTES`].
        max: usize,
    },
    /// The IMAP server could not be reached, refused the login, did not answer in time, or
    /// broke the protocol.
    #[error(transparent)]
    Imap(#[from] ImapError),
    /// The IMAP server refused the operation on a folder.
    #[error("the IMAP server refused to {what} {folder:?} for {email}: {reason}")]
    Refused {
        /// Whose mailbox.
        email: String,
        /// What was asked ("open the folder", "create the folder", "move the message to", …).
        what: &'static str,
        /// The folder.
        folder: String,
        /// What the server said.
        reason: String,
    },
    /// A file or directory of the Maildir store could not be read or written.
    #[error("the Maildir {path}: {source}")]
    Maildir {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// Operations on single messages of users' mailboxes; see the module docs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MailAccess {
    store: Store,
}

#[derive(Debug, Clone)]
enum Store {
    Imap(Arc<ImapConfig>),
    Maildir(Arc<PathBuf>),
}

impl Store {
    fn kind(&self) -> &'static str {
        match self {
            Store::Imap(_) => "an IMAP mailbox",
            Store::Maildir(_) => "the embedded Maildir store",
        }
    }
}

impl MailAccess {
    /// Access to the store `source` names (the one the watchers use).
    pub fn new(source: &MailboxSource) -> MailAccess {
        let store = match source {
            MailboxSource::Imap(cfg) => Store::Imap(Arc::new(cfg.clone())),
            MailboxSource::Maildir(m) => Store::Maildir(Arc::new(m.root.clone())),
        };
        MailAccess { store }
    }

    /// The message's bytes, at most `max_bytes` of them ([`Fetched::truncated`] says whether it
    /// was cut). Leaves `\Seen` alone. `Ok(None)` when it is no longer there (expunged, moved
    /// away, its folder gone, or UIDVALIDITY changed).
    ///
    /// # Errors
    /// An [`AccessError`]: a bad address or locator, or the store failed.
    pub async fn fetch(
        &self,
        email: &str,
        loc: &Locator,
        max_bytes: u64,
    ) -> Result<Option<Fetched>, AccessError> {
        let email = address(email)?;
        match (&self.store, loc) {
            (Store::Imap(cfg), Locator::Imap { uid, .. }) => {
                let Some(mut c) = Conn::at(cfg, &email, loc).await? else {
                    return Ok(None);
                };
                let r = c.fetch(*uid, max_bytes).await;
                c.logout().await;
                r
            }
            (Store::Maildir(root), Locator::Maildir { folder, name }) => {
                let dir = maildir_folder(root, &email, folder)?;
                check_name(name)?;
                let name = name.clone();
                blocking(root, move || md_fetch(&dir, &name, max_bytes)).await
            }
            _ => Err(self.wrong_store(loc)),
        }
    }

    /// Current flags of the message; `None` when it is gone.
    ///
    /// # Errors
    /// An [`AccessError`]: a bad address or locator, or the store failed.
    pub async fn flags(&self, email: &str, loc: &Locator) -> Result<Option<Flags>, AccessError> {
        let email = address(email)?;
        match (&self.store, loc) {
            (Store::Imap(cfg), Locator::Imap { uid, .. }) => {
                let Some(mut c) = Conn::at(cfg, &email, loc).await? else {
                    return Ok(None);
                };
                let r = c.flags(*uid).await;
                c.logout().await;
                r
            }
            (Store::Maildir(root), Locator::Maildir { folder, name }) => {
                let dir = maildir_folder(root, &email, folder)?;
                check_name(name)?;
                let name = name.clone();
                blocking(root, move || {
                    Ok(md_find(&dir, &name)?.map(|f| parse_info_flags(&f.info)))
                })
                .await
            }
            _ => Err(self.wrong_store(loc)),
        }
    }

    /// Sets or clears `\Seen` and/or `\Flagged` (`None`: leave it as it is). `Ok(false)` when
    /// the message is gone.
    ///
    /// # Errors
    /// An [`AccessError`]: a bad address or locator, or the store failed.
    pub async fn set_flags(
        &self,
        email: &str,
        loc: &Locator,
        seen: Option<bool>,
        flagged: Option<bool>,
    ) -> Result<bool, AccessError> {
        let email = address(email)?;
        match (&self.store, loc) {
            (Store::Imap(cfg), Locator::Imap { uid, .. }) => {
                let Some(mut c) = Conn::at(cfg, &email, loc).await? else {
                    return Ok(false);
                };
                let r = c.set_flags(*uid, seen, flagged).await;
                c.logout().await;
                r
            }
            (Store::Maildir(root), Locator::Maildir { folder, name }) => {
                let dir = maildir_folder(root, &email, folder)?;
                check_name(name)?;
                let name = name.clone();
                blocking(root, move || md_set_flags(&dir, &name, seen, flagged)).await
            }
            _ => Err(self.wrong_store(loc)),
        }
    }

    /// Deletes the message for good (IMAP: `\Deleted` then `UID EXPUNGE` of just that UID;
    /// without UIDPLUS a plain `EXPUNGE`; Maildir: the file is removed). `Ok(false)` when it
    /// is gone already.
    ///
    /// # Errors
    /// An [`AccessError`]: a bad address or locator, or the store failed.
    pub async fn delete(&self, email: &str, loc: &Locator) -> Result<bool, AccessError> {
        let email = address(email)?;
        match (&self.store, loc) {
            (Store::Imap(cfg), Locator::Imap { uid, .. }) => {
                let Some(mut c) = Conn::at(cfg, &email, loc).await? else {
                    return Ok(false);
                };
                let r = c.delete(*uid).await;
                c.logout().await;
                r
            }
            (Store::Maildir(root), Locator::Maildir { folder, name }) => {
                let dir = maildir_folder(root, &email, folder)?;
                check_name(name)?;
                let name = name.clone();
                blocking(root, move || md_delete(&dir, &name)).await
            }
            _ => Err(self.wrong_store(loc)),
        }
    }

    /// Moves the message to `folder`, which is created if missing. IMAP: `UID MOVE` (RFC 6851)
    /// when the server offers it, else `UID COPY` and delete. Returns [`Moved::To`] with its new
    /// locator when that can be known (always for Maildir; IMAP: the `COPYUID` response code of
    /// UIDPLUS, or else a search for its Message-ID in the target folder), [`Moved::Untracked`]
    /// when it was moved but its new UID is unknown, and `None` when the message was gone.
    /// Moving to the folder it is in changes nothing.
    ///
    /// # Errors
    /// An [`AccessError`]: a bad address, locator or folder name, or the store failed.
    pub async fn move_to(
        &self,
        email: &str,
        loc: &Locator,
        folder: &str,
    ) -> Result<Option<Moved>, AccessError> {
        let email = address(email)?;
        check_folder(folder)?;
        match (&self.store, loc) {
            (Store::Imap(cfg), Locator::Imap { uid, .. }) => {
                let Some(mut c) = Conn::at(cfg, &email, loc).await? else {
                    return Ok(None);
                };
                let r = if same_folder(loc.folder(), folder) {
                    c.exists(*uid)
                        .await
                        .map(|e| e.then(|| Moved::To(loc.clone())))
                } else {
                    c.move_to(*uid, folder).await
                };
                c.logout().await;
                r
            }
            (Store::Maildir(root), Locator::Maildir { folder: from, name }) => {
                let src = maildir_folder(root, &email, from)?;
                let dst = maildir_folder(root, &email, folder)?;
                check_name(name)?;
                let (name, target) = (name.clone(), folder.to_owned());
                blocking(root, move || {
                    let moved = md_move(&src, &dst, &name)?;
                    Ok(moved.then_some(Moved::To(Locator::Maildir {
                        folder: target,
                        name,
                    })))
                })
                .await
            }
            _ => Err(self.wrong_store(loc)),
        }
    }

    /// Appends `raw` to `folder` (created if missing), flagged `\Seen` when `seen`: the copy of
    /// a message sent from the phone, filed in "Sent".
    ///
    /// # Errors
    /// An [`AccessError`]: a bad address or folder name, a message over
    /// [`MAX_APPEND_BYTES`], or the store failed.
    pub async fn append(
        &self,
        email: &str,
        folder: &str,
        raw: &[u8],
        seen: bool,
    ) -> Result<(), AccessError> {
        let email = address(email)?;
        check_folder(folder)?;
        if raw.len() > MAX_APPEND_BYTES {
            return Err(AccessError::TooLarge {
                folder: folder.to_owned(),
                size: raw.len(),
                max: MAX_APPEND_BYTES,
            });
        }
        match &self.store {
            Store::Imap(cfg) => {
                let mut c = Conn::login(cfg, &email).await?;
                let r = c.append(folder, raw, seen).await;
                c.logout().await;
                r
            }
            Store::Maildir(root) => {
                let dir = maildir_folder(root, &email, folder)?;
                let raw = raw.to_vec();
                blocking(root, move || md_append(&dir, &raw, seen)).await
            }
        }
    }

    /// The newest message in `folder` with this Message-ID (without angle brackets); `None`
    /// when there is none (or no such folder). For the embedded Maildir store, whose local
    /// delivery recognises a repeat by itself, always `None`.
    ///
    /// # Errors
    /// An [`AccessError`]: a bad address, folder or Message-ID, or the store failed.
    pub async fn find_message_id(
        &self,
        email: &str,
        folder: &str,
        message_id: &str,
    ) -> Result<Option<Locator>, AccessError> {
        let email = address(email)?;
        check_folder(folder)?;
        if message_id.is_empty()
            || message_id.len() > MAX_MESSAGE_ID
            || message_id
                .chars()
                .any(|c| c.is_control() || c == '"' || c == '\\')
        {
            return Ok(None);
        }
        let Store::Imap(cfg) = &self.store else {
            return Ok(None);
        };
        let mut c = Conn::login(cfg, &email).await?;
        let r = c.find_message_id(folder, message_id).await;
        c.logout().await;
        r
    }

    fn wrong_store(&self, loc: &Locator) -> AccessError {
        AccessError::WrongStore {
            locator: loc.kind(),
            store: self.store.kind(),
        }
    }
}

/// Lower-cases and checks an address, as the watchers do.
fn address(email: &str) -> Result<String, AccessError> {
    super::normalize(email).map_err(|_| AccessError::BadAddress(email.to_owned()))
}

fn is_inbox(folder: &str) -> bool {
    folder.eq_ignore_ascii_case("INBOX")
}

fn same_folder(a: &str, b: &str) -> bool {
    a == b || (is_inbox(a) && is_inbox(b))
}

/// The rules every folder name follows (IMAP and Maildir).
fn check_folder(folder: &str) -> Result<(), AccessError> {
    let bad = |reason| {
        Err(AccessError::BadFolder {
            folder: folder.to_owned(),
            reason,
        })
    };
    if folder.is_empty() {
        return bad("it is empty");
    }
    if folder.len() > MAX_FOLDER_BYTES {
        return bad("it is longer than 255 bytes");
    }
    if folder.chars().any(char::is_control) {
        return bad("it holds a control character");
    }
    Ok(())
}

/// A folder name as sent to the IMAP server.
fn imap_name(folder: &str) -> String {
    if is_inbox(folder) {
        "INBOX".to_owned()
    } else {
        utf7_imap(folder)
    }
}

/// Modified UTF-7 (RFC 3501 5.1.3): printable ASCII as it is (`&` as `&-`), anything else as
/// UTF-16 in base64 with `,` for `/`, between `&` and `-`.
fn utf7_imap(s: &str) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";
    fn flush(out: &mut String, units: &mut Vec<u16>) {
        if units.is_empty() {
            return;
        }
        let bytes: Vec<u8> = units.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            let chars = chunk.len() + 1;
            for i in 0..chars {
                let idx = (n >> (18 - 6 * i)) & 0x3f;
                out.push(char::from(B64[idx as usize]));
            }
        }
        out.push('-');
        units.clear();
    }
    let mut out = String::with_capacity(s.len());
    let mut units = Vec::new();
    for c in s.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut out, &mut units);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            units.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut out, &mut units);
    out
}

// ---------------------------------------------------------------------------------------------
// IMAP

/// One connection for one call.
struct Conn<'a> {
    cfg: &'a ImapConfig,
    email: &'a str,
    session: Session,
    caps: Capabilities,
}

/// How a command the caller reads itself ended.
struct Outcome {
    ok: bool,
    /// The server's words on a refusal.
    text: String,
    /// `COPYUID`: the destination's UIDVALIDITY, source and destination UIDs.
    copyuid: Option<(u32, Vec<u32>, Vec<u32>)>,
}

impl<'a> Conn<'a> {
    async fn login(cfg: &'a ImapConfig, email: &'a str) -> Result<Conn<'a>, AccessError> {
        let (session, caps) = imap::login(cfg, email).await?;
        Ok(Conn {
            cfg,
            email,
            session,
            caps,
        })
    }

    /// Logs in and selects `loc`'s folder; `None` when the message cannot be there (no such
    /// folder, another UIDVALIDITY, or UID 0).
    async fn at(
        cfg: &'a ImapConfig,
        email: &'a str,
        loc: &Locator,
    ) -> Result<Option<Conn<'a>>, AccessError> {
        let Locator::Imap {
            folder,
            uid_validity,
            uid,
        } = loc
        else {
            return Ok(None);
        };
        check_folder(folder)?;
        if *uid == 0 {
            return Ok(None);
        }
        let mut c = Conn::login(cfg, email).await?;
        match c.select(folder).await {
            Ok(Some(v)) if v == *uid_validity => Ok(Some(c)),
            Ok(Some(v)) => {
                tracing::debug!(mailbox = %email, folder, "UIDVALIDITY is {v}, not {uid_validity}: the message is gone");
                c.logout().await;
                Ok(None)
            }
            Ok(None) => {
                c.logout().await;
                Ok(None)
            }
            Err(e) => {
                c.logout().await;
                Err(e)
            }
        }
    }

    async fn logout(self) {
        imap::logout(self.session).await;
    }

    fn refused(&self, what: &'static str, folder: &str, reason: String) -> AccessError {
        AccessError::Refused {
            email: self.email.to_owned(),
            what,
            folder: folder.to_owned(),
            reason,
        }
    }

    /// SELECTs `folder`: its UIDVALIDITY, or `None` when it does not exist.
    async fn select(&mut self, folder: &str) -> Result<Option<u32>, AccessError> {
        let name = imap_name(folder);
        let selected = tokio::time::timeout(self.cfg.timeout, self.session.select(&name)).await;
        let refusal = match selected {
            Err(_) => {
                return Err(ImapError::Timeout {
                    addr: self.cfg.addr.clone(),
                    what: "SELECT",
                    after: self.cfg.timeout,
                }
                .into());
            }
            Ok(Ok(m)) => {
                return match m.uid_validity {
                    Some(v) => Ok(Some(v)),
                    None => Err(self.refused(
                        "open the folder",
                        folder,
                        "the server did not say its UIDVALIDITY".into(),
                    )),
                };
            }
            Ok(Err(e @ (ProtoError::No(_) | ProtoError::Bad(_)))) => imap::server_said(&e),
            Ok(Err(e)) => {
                return Err(ImapError::Protocol {
                    email: self.email.to_owned(),
                    what: "SELECT",
                    reason: imap::server_said(&e),
                    parse: matches!(e, ProtoError::Parse(_)),
                }
                .into());
            }
        };
        // RFC 5530; else ask whether the folder exists
        if refusal.contains("[NONEXISTENT]") || !self.folder_exists(&name).await? {
            tracing::debug!(mailbox = %self.email, folder, "no such folder: the message is gone");
            return Ok(None);
        }
        Err(self.refused("open the folder", folder, refusal))
    }

    /// `STATUS`: whether the folder (as sent to the server) exists.
    async fn folder_exists(&mut self, name: &str) -> Result<bool, AccessError> {
        match tokio::time::timeout(self.cfg.timeout, self.session.status(name, "(UIDVALIDITY)"))
            .await
        {
            Err(_) => Err(ImapError::Timeout {
                addr: self.cfg.addr.clone(),
                what: "STATUS",
                after: self.cfg.timeout,
            }
            .into()),
            Ok(Ok(_)) => Ok(true),
            Ok(Err(ProtoError::No(_))) => Ok(false),
            Ok(Err(e)) => Err(ImapError::Protocol {
                email: self.email.to_owned(),
                what: "STATUS",
                reason: imap::server_said(&e),
                parse: matches!(e, ProtoError::Parse(_)),
            }
            .into()),
        }
    }

    /// Creates `folder` unless it exists.
    async fn ensure_folder(&mut self, folder: &str) -> Result<(), AccessError> {
        let name = imap_name(folder);
        if is_inbox(folder) || self.folder_exists(&name).await? {
            return Ok(());
        }
        match tokio::time::timeout(self.cfg.timeout, self.session.create(&name)).await {
            Err(_) => Err(ImapError::Timeout {
                addr: self.cfg.addr.clone(),
                what: "CREATE",
                after: self.cfg.timeout,
            }
            .into()),
            Ok(Ok(())) => {
                tracing::info!(mailbox = %self.email, folder, "folder created");
                Ok(())
            }
            Ok(Err(e @ (ProtoError::No(_) | ProtoError::Bad(_)))) => {
                let reason = imap::server_said(&e);
                // created by someone else in the meantime
                if reason.contains("[ALREADYEXISTS]") {
                    return Ok(());
                }
                Err(self.refused("create the folder", folder, reason))
            }
            Ok(Err(e)) => Err(ImapError::Protocol {
                email: self.email.to_owned(),
                what: "CREATE",
                reason: imap::server_said(&e),
                parse: matches!(e, ProtoError::Parse(_)),
            }
            .into()),
        }
    }

    /// `UID FETCH uid items`, the one answer for that UID (if any) handed to `f`.
    async fn fetch_one<T>(
        &mut self,
        what: &'static str,
        uid: u32,
        items: &str,
        f: impl FnOnce(&async_imap::types::Fetch) -> T,
    ) -> Result<Option<T>, AccessError> {
        let fetched = imap::timed(self.cfg, self.email, what, async {
            self.session
                .uid_fetch(uid.to_string(), items)
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        Ok(fetched.iter().find(|m| m.uid == Some(uid)).map(f))
    }

    async fn flags(&mut self, uid: u32) -> Result<Option<Flags>, AccessError> {
        self.fetch_one("UID FETCH (FLAGS)", uid, "(UID FLAGS)", |m| {
            let mut flags = Flags::default();
            for flag in m.flags() {
                match flag {
                    Flag::Seen => flags.seen = true,
                    Flag::Flagged => flags.flagged = true,
                    _ => {}
                }
            }
            flags
        })
        .await
    }

    async fn exists(&mut self, uid: u32) -> Result<bool, AccessError> {
        Ok(self.flags(uid).await?.is_some())
    }

    async fn fetch(&mut self, uid: u32, max_bytes: u64) -> Result<Option<Fetched>, AccessError> {
        let items = format!(
            "(UID RFC822.SIZE BODY.PEEK[]<0.{}>)",
            max_bytes.saturating_add(1)
        );
        let got = self
            .fetch_one("UID FETCH (message)", uid, &items, |m| {
                m.body().map(|body| {
                    let size = m.size.map(u64::from);
                    let keep = usize::try_from(max_bytes).unwrap_or(usize::MAX);
                    let truncated = body.len() > keep || size.is_some_and(|s| s > max_bytes);
                    Fetched {
                        raw: body[..body.len().min(keep)].to_vec(),
                        truncated,
                        size,
                    }
                })
            })
            .await?;
        Ok(match got {
            Some(Some(f)) => Some(f),
            // a FETCH without the body: an empty message, as far as the server is concerned
            Some(None) => Some(Fetched {
                raw: Vec::new(),
                truncated: false,
                size: Some(0),
            }),
            None => None,
        })
    }

    async fn store(&mut self, uid: u32, change: &str) -> Result<(), AccessError> {
        imap::timed(self.cfg, self.email, "UID STORE", async {
            self.session
                .uid_store(uid.to_string(), change)
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        Ok(())
    }

    async fn set_flags(
        &mut self,
        uid: u32,
        seen: Option<bool>,
        flagged: Option<bool>,
    ) -> Result<bool, AccessError> {
        let Some(now) = self.flags(uid).await? else {
            return Ok(false);
        };
        let (mut add, mut remove) = (Vec::new(), Vec::new());
        for (want, have, name) in [
            (seen, now.seen, "\\Seen"),
            (flagged, now.flagged, "\\Flagged"),
        ] {
            match want {
                Some(true) if !have => add.push(name),
                Some(false) if have => remove.push(name),
                _ => {}
            }
        }
        if !add.is_empty() {
            self.store(uid, &format!("+FLAGS.SILENT ({})", add.join(" ")))
                .await?;
        }
        if !remove.is_empty() {
            self.store(uid, &format!("-FLAGS.SILENT ({})", remove.join(" ")))
                .await?;
        }
        Ok(true)
    }

    /// `\Deleted`, then `UID EXPUNGE` (or `EXPUNGE` without UIDPLUS).
    async fn expunge(&mut self, uid: u32) -> Result<(), AccessError> {
        self.store(uid, "+FLAGS.SILENT (\\Deleted)").await?;
        if self.caps.has_str("UIDPLUS") {
            imap::timed(self.cfg, self.email, "UID EXPUNGE", async {
                self.session
                    .uid_expunge(uid.to_string())
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            })
            .await?;
        } else {
            imap::timed(self.cfg, self.email, "EXPUNGE", async {
                self.session.expunge().await?.try_collect::<Vec<_>>().await
            })
            .await?;
        }
        Ok(())
    }

    async fn delete(&mut self, uid: u32) -> Result<bool, AccessError> {
        if !self.exists(uid).await? {
            return Ok(false);
        }
        self.expunge(uid).await?;
        Ok(true)
    }

    /// The message's Message-ID header value (with its angle brackets), if it has a usable one.
    async fn message_id(&mut self, uid: u32) -> Result<Option<Option<String>>, AccessError> {
        self.fetch_one(
            "UID FETCH (Message-ID)",
            uid,
            "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])",
            |m| m.header().and_then(message_id_of),
        )
        .await
    }

    async fn move_to(&mut self, uid: u32, folder: &str) -> Result<Option<Moved>, AccessError> {
        // also tells whether it is still there
        let Some(message_id) = self.message_id(uid).await? else {
            return Ok(None);
        };
        self.ensure_folder(folder).await?;
        let name = imap_name(folder);
        let quoted = quote(&name);
        let moved = self.caps.has_str("MOVE");
        let uidplus = self.caps.has_str("UIDPLUS");
        let (command, what) = if moved {
            (format!("UID MOVE {uid} {quoted}"), "move the message to")
        } else {
            (format!("UID COPY {uid} {quoted}"), "copy the message to")
        };
        let out = self.command(&command).await?;
        if !out.ok {
            return Err(self.refused(what, folder, out.text));
        }
        if !moved {
            self.expunge(uid).await?;
        }
        // COPYUID is UIDPLUS's (RFC 4315): trusted only from a server that announces it
        if let Some((validity, src, dst)) = out.copyuid.as_ref().filter(|_| uidplus)
            && let Some(new) = src.iter().position(|&u| u == uid).and_then(|i| dst.get(i))
        {
            tracing::debug!(mailbox = %self.email, folder, uid, new, "moved; new UID from COPYUID");
            return Ok(Some(Moved::To(Locator::Imap {
                folder: folder.to_owned(),
                uid_validity: *validity,
                uid: *new,
            })));
        }
        // no COPYUID: look for it by its Message-ID
        let Some(id) = message_id else {
            tracing::debug!(mailbox = %self.email, folder, uid, "moved; no COPYUID (or no UIDPLUS) and no Message-ID: new UID unknown");
            return Ok(Some(Moved::Untracked));
        };
        tracing::debug!(mailbox = %self.email, folder, uid, "moved; no COPYUID (or no UIDPLUS): searching the target for its Message-ID");
        let Some(validity) = self.select(folder).await? else {
            return Ok(Some(Moved::Untracked));
        };
        let query = format!("HEADER Message-ID {}", quote(&id));
        let found = imap::timed(
            self.cfg,
            self.email,
            "UID SEARCH",
            self.session.uid_search(&query),
        )
        .await?;
        Ok(Some(match found.into_iter().max() {
            Some(new) => Moved::To(Locator::Imap {
                folder: folder.to_owned(),
                uid_validity: validity,
                uid: new,
            }),
            None => Moved::Untracked,
        }))
    }

    async fn find_message_id(
        &mut self,
        folder: &str,
        message_id: &str,
    ) -> Result<Option<Locator>, AccessError> {
        let Some(validity) = self.select(folder).await? else {
            return Ok(None);
        };
        let query = format!("HEADER Message-ID {}", quote(message_id));
        let found = imap::timed(
            self.cfg,
            self.email,
            "UID SEARCH",
            self.session.uid_search(&query),
        )
        .await?;
        Ok(found.into_iter().max().map(|uid| Locator::Imap {
            folder: folder.to_owned(),
            uid_validity: validity,
            uid,
        }))
    }

    async fn append(&mut self, folder: &str, raw: &[u8], seen: bool) -> Result<(), AccessError> {
        self.ensure_folder(folder).await?;
        let name = imap_name(folder);
        let flags = seen.then_some("(\\Seen)");
        match tokio::time::timeout(
            self.cfg.timeout,
            self.session.append(&name, flags, None, raw),
        )
        .await
        {
            Err(_) => Err(ImapError::Timeout {
                addr: self.cfg.addr.clone(),
                what: "APPEND",
                after: self.cfg.timeout,
            }
            .into()),
            Ok(Ok(())) => Ok(()),
            Ok(Err(e @ (ProtoError::No(_) | ProtoError::Bad(_) | ProtoError::Append))) => {
                Err(self.refused("add the message to", folder, imap::server_said(&e)))
            }
            Ok(Err(e)) => Err(ImapError::Protocol {
                email: self.email.to_owned(),
                what: "APPEND",
                reason: imap::server_said(&e),
                parse: matches!(e, ProtoError::Parse(_)),
            }
            .into()),
        }
    }

    /// Sends `command` and reads its answers up to the tagged one, keeping `COPYUID` (tagged
    /// for `UID COPY`, untagged for `UID MOVE`), which async-imap does not hand out.
    async fn command(&mut self, command: &str) -> Result<Outcome, AccessError> {
        let cfg = self.cfg;
        let email = self.email;
        let id = imap::timed(
            cfg,
            email,
            "UID MOVE/COPY",
            self.session.run_command(command),
        )
        .await?;
        let mut copyuid = None;
        loop {
            let response =
                match tokio::time::timeout(cfg.timeout, self.session.read_response()).await {
                    Err(_) => {
                        return Err(ImapError::Timeout {
                            addr: cfg.addr.clone(),
                            what: "UID MOVE/COPY",
                            after: cfg.timeout,
                        }
                        .into());
                    }
                    Ok(Ok(Some(r))) => r,
                    Ok(Ok(None)) => {
                        return Err(ImapError::Protocol {
                            email: email.to_owned(),
                            what: "UID MOVE/COPY",
                            reason: "the server closed the connection".into(),
                            parse: false,
                        }
                        .into());
                    }
                    Ok(Err(e)) => {
                        return Err(ImapError::Protocol {
                            email: email.to_owned(),
                            what: "UID MOVE/COPY",
                            reason: e.to_string(),
                            parse: e.kind() == io::ErrorKind::InvalidData,
                        }
                        .into());
                    }
                };
            match response.parsed() {
                Response::Data {
                    status: Status::Ok,
                    outcome,
                } => {
                    if let Some(ResponseCode::CopyUid(v, src, dst)) = &outcome.code {
                        copyuid = Some((*v, uids(src), uids(dst)));
                    }
                }
                Response::Data {
                    status: Status::Bye,
                    outcome,
                } => {
                    return Err(ImapError::Protocol {
                        email: email.to_owned(),
                        what: "UID MOVE/COPY",
                        reason: format!(
                            "the server closed the connection: {}",
                            outcome
                                .information
                                .as_deref()
                                .unwrap_or("(no reason given)")
                        ),
                        parse: false,
                    }
                    .into());
                }
                Response::Done {
                    tag,
                    status,
                    outcome,
                } if *tag == id => {
                    if let Some(ResponseCode::CopyUid(v, src, dst)) = &outcome.code {
                        copyuid = Some((*v, uids(src), uids(dst)));
                    }
                    return Ok(Outcome {
                        ok: *status == Status::Ok,
                        text: outcome
                            .information
                            .as_deref()
                            .unwrap_or("(no reason given)")
                            .to_owned(),
                        copyuid,
                    });
                }
                // EXPUNGE, EXISTS, FETCH, …: nothing this call needs
                _ => {}
            }
        }
    }
}

/// The UIDs of a `COPYUID` set, in order; at most 1000 (one message is moved at a time).
fn uids(set: &[UidSetMember]) -> Vec<u32> {
    let mut out = Vec::new();
    for member in set {
        match member {
            UidSetMember::Uid(u) => out.push(*u),
            UidSetMember::UidRange(r) => {
                out.extend(r.clone().take(1000usize.saturating_sub(out.len())));
            }
        }
        if out.len() >= 1000 {
            break;
        }
    }
    out
}

/// An IMAP quoted string.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The value of the `Message-ID` header in `header` (unfolded, trimmed), if it is printable
/// ASCII and not too long.
fn message_id_of(header: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(header).ok()?;
    let mut value: Option<String> = None;
    for line in text.split("\r\n").flat_map(|l| l.split('\n')) {
        if line.starts_with([' ', '\t']) {
            if let Some(v) = value.as_mut() {
                v.push_str(line.trim());
            }
        } else if value.is_some() {
            break;
        } else if let Some((name, rest)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("message-id")
        {
            value = Some(rest.trim().to_owned());
        }
    }
    let value = value?;
    let ok = !value.is_empty()
        && value.len() <= MAX_MESSAGE_ID
        && value.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    ok.then_some(value)
}

// ---------------------------------------------------------------------------------------------
// Maildir

/// Runs a Maildir operation on the blocking pool.
async fn blocking<T: Send + 'static>(
    root: &Path,
    f: impl FnOnce() -> Result<T, AccessError> + Send + 'static,
) -> Result<T, AccessError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(AccessError::Maildir {
            path: root.to_owned(),
            source: io::Error::other(format!("the file operation did not finish: {e}")),
        }),
    }
}

/// `ROOT/<email>/Maildir` for INBOX, `ROOT/<email>/Maildir/.<folder>` (modified UTF-7) for
/// another folder, after checking the name.
fn maildir_folder(root: &Path, email: &str, folder: &str) -> Result<PathBuf, AccessError> {
    check_folder(folder)?;
    let maildir = root.join(email).join("Maildir");
    if is_inbox(folder) {
        return Ok(maildir);
    }
    let bad = |reason| {
        Err(AccessError::BadFolder {
            folder: folder.to_owned(),
            reason,
        })
    };
    if folder.contains('/') || folder.contains('\\') {
        return bad("'/' and '\\' cannot be used in a Maildir folder name");
    }
    if folder.starts_with('.') || folder.ends_with('.') || folder.contains("..") {
        return bad("a level of the name is empty (Maildir++ separates levels with '.')");
    }
    let encoded = utf7_imap(folder);
    if encoded.len() + 1 > MAX_NAME_BYTES {
        return bad("it is too long for a Maildir directory name");
    }
    Ok(maildir.join(format!(".{encoded}")))
}

/// A message file's base name must be a plain file name.
fn check_name(name: &str) -> Result<(), AccessError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && !name
            .chars()
            .any(|c| c.is_control() || matches!(c, '/' | '\\' | ':'));
    if ok {
        Ok(())
    } else {
        Err(AccessError::BadName(name.to_owned()))
    }
}

fn md_err(path: &Path) -> impl FnOnce(io::Error) -> AccessError + '_ {
    move |source| AccessError::Maildir {
        path: path.to_owned(),
        source,
    }
}

fn not_a_dir() -> io::Error {
    io::Error::other("is a symbolic link or not a directory (links are not followed in a Maildir)")
}

/// Whether `path` is a real directory: `false` when missing, an error when it is a link or a
/// file.
fn real_dir(path: &Path) -> Result<bool, AccessError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(true),
        Ok(_) => Err(md_err(path)(not_a_dir())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(md_err(path)(e)),
    }
}

/// Creates `path` (one level) unless it is there; never through a link.
fn ensure_dir(path: &Path) -> Result<(), AccessError> {
    if real_dir(path)? {
        return Ok(());
    }
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if real_dir(path)? {
                Ok(())
            } else {
                Err(md_err(path)(not_a_dir()))
            }
        }
        Err(e) => Err(md_err(path)(e)),
    }
}

/// The directories of the folder `dir` from the user's down: `ROOT/<email>`,
/// `ROOT/<email>/Maildir`, and for a subfolder `…/Maildir/.Name`.
fn levels(dir: &Path) -> Vec<&Path> {
    let subfolder = dir.file_name().is_some_and(|n| n != "Maildir");
    let maildir = if subfolder {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    let mut out = vec![maildir.parent().unwrap_or(maildir), maildir];
    if subfolder {
        out.push(dir);
    }
    out
}

/// Creates the folder `dir` with `new/`, `cur/`, `tmp/` and the directories above it up to
/// the user's, none of them through a link.
fn md_create(dir: &Path) -> Result<(), AccessError> {
    let levels = levels(dir);
    if let Some(root) = levels.first().and_then(|user| user.parent()) {
        fs::create_dir_all(root).map_err(md_err(root))?;
    }
    for level in &levels {
        ensure_dir(level)?;
    }
    for sub in ["new", "cur", "tmp"] {
        ensure_dir(&dir.join(sub))?;
    }
    if levels.len() == 3 {
        // Maildir++: marks a subfolder (Dovecot makes it too)
        let marker = dir.join("maildirfolder");
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&marker)
        {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(md_err(&marker)(e)),
        }
    }
    Ok(())
}

/// Whether the folder `dir` and the directories above it are there, as real directories.
fn md_folder_exists(dir: &Path) -> Result<bool, AccessError> {
    for level in levels(dir) {
        if !real_dir(level)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A message file found by its base name.
#[derive(Debug)]
struct Found {
    path: PathBuf,
    /// In `cur/` (else `new/`).
    in_cur: bool,
    /// The file name's part after the base name (`:2,FS`, or empty).
    info: String,
}

/// Looks for the regular file `name` or `name:…` in `dir/new` and `dir/cur`.
fn md_find(dir: &Path, name: &str) -> Result<Option<Found>, AccessError> {
    if !md_folder_exists(dir)? {
        return Ok(None);
    }
    for sub in ["new", "cur"] {
        let d = dir.join(sub);
        if !real_dir(&d)? {
            continue;
        }
        let entries = fs::read_dir(&d).map_err(md_err(&d))?;
        for entry in entries {
            let entry = entry.map_err(md_err(&d))?;
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            let Some(rest) = file_name.strip_prefix(name) else {
                continue;
            };
            if !(rest.is_empty() || rest.starts_with(':')) {
                continue;
            }
            // DirEntry::file_type does not follow links
            match entry.file_type() {
                Ok(t) if t.is_file() => {}
                _ => continue,
            }
            return Ok(Some(Found {
                path: entry.path(),
                in_cur: sub == "cur",
                info: rest.to_owned(),
            }));
        }
    }
    Ok(None)
}

/// The flag letters of an info part (`:2,FS` → `FS`); anything but `:2,` has none.
fn info_letters(info: &str) -> &str {
    info.strip_prefix(":2,").unwrap_or("")
}

fn parse_info_flags(info: &str) -> Flags {
    let letters = info_letters(info);
    Flags {
        seen: letters.contains('S'),
        flagged: letters.contains('F'),
    }
}

/// The info part with `S` and `F` as asked, the letters sorted and once each.
fn new_info(info: &str, seen: Option<bool>, flagged: Option<bool>) -> String {
    let mut letters: BTreeSet<char> = info_letters(info)
        .chars()
        .filter(char::is_ascii_alphabetic)
        .collect();
    for (want, letter) in [(seen, 'S'), (flagged, 'F')] {
        match want {
            Some(true) => {
                letters.insert(letter);
            }
            Some(false) => {
                letters.remove(&letter);
            }
            None => {}
        }
    }
    let mut out = String::from(":2,");
    out.extend(letters);
    out
}

fn md_fetch(dir: &Path, name: &str, max_bytes: u64) -> Result<Option<Fetched>, AccessError> {
    for _ in 0..MAILDIR_ATTEMPTS {
        let Some(found) = md_find(dir, name)? else {
            return Ok(None);
        };
        let path = &found.path;
        let meta = match fs::symlink_metadata(path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(md_err(path)(e)),
        };
        let file = match fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(md_err(path)(e)),
        };
        // the file opened is the one looked at, not a link put in its place since
        let opened = file.metadata().map_err(md_err(path))?;
        if opened.dev() != meta.dev() || opened.ino() != meta.ino() {
            continue;
        }
        let size = opened.len();
        let cap = usize::try_from(size.min(max_bytes)).unwrap_or(0);
        let mut raw = Vec::with_capacity(cap);
        file.take(max_bytes.saturating_add(1))
            .read_to_end(&mut raw)
            .map_err(md_err(path))?;
        let keep = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        let truncated = raw.len() > keep;
        raw.truncate(keep);
        return Ok(Some(Fetched {
            raw,
            truncated: truncated || size > max_bytes,
            size: Some(size),
        }));
    }
    Ok(None)
}

fn md_set_flags(
    dir: &Path,
    name: &str,
    seen: Option<bool>,
    flagged: Option<bool>,
) -> Result<bool, AccessError> {
    for _ in 0..MAILDIR_ATTEMPTS {
        let Some(found) = md_find(dir, name)? else {
            return Ok(false);
        };
        let info = new_info(&found.info, seen, flagged);
        if found.in_cur && info == found.info {
            return Ok(true);
        }
        let to = dir.join("cur").join(format!("{name}{info}"));
        match fs::rename(&found.path, &to) {
            Ok(()) => return Ok(true),
            // renamed by another reader (Dovecot) in the meantime: look again
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(md_err(&found.path)(e)),
        }
    }
    Ok(false)
}

fn md_delete(dir: &Path, name: &str) -> Result<bool, AccessError> {
    for _ in 0..MAILDIR_ATTEMPTS {
        let Some(found) = md_find(dir, name)? else {
            return Ok(false);
        };
        match fs::remove_file(&found.path) {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(md_err(&found.path)(e)),
        }
    }
    Ok(false)
}

/// `false` when the message is gone.
fn md_move(src: &Path, dst: &Path, name: &str) -> Result<bool, AccessError> {
    if src == dst {
        return Ok(md_find(src, name)?.is_some());
    }
    if md_find(src, name)?.is_none() {
        return Ok(false);
    }
    md_create(dst)?;
    if let Some(there) = md_find(dst, name)? {
        return Err(md_err(&there.path)(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a message file with the same name is already in the target folder",
        )));
    }
    for _ in 0..MAILDIR_ATTEMPTS {
        let Some(found) = md_find(src, name)? else {
            return Ok(false);
        };
        let info = new_info(&found.info, None, None);
        let to = dst.join("cur").join(format!("{name}{info}"));
        match fs::rename(&found.path, &to) {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(md_err(&found.path)(e)),
        }
    }
    Ok(false)
}

fn md_append(dir: &Path, raw: &[u8], seen: bool) -> Result<(), AccessError> {
    md_create(dir)?;
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let name = format!("{ms}.{:016x}.bramble", rand::random::<u64>());
    let tmp = dir.join("tmp").join(&name);
    let written = (|| {
        // create_new: never through a link or over another file
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(raw)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(md_err(&tmp)(e));
    }
    let to = if seen {
        dir.join("cur").join(format!("{name}:2,S"))
    } else {
        dir.join("new").join(&name)
    };
    if let Err(e) = fs::rename(&tmp, &to) {
        let _ = fs::remove_file(&tmp);
        return Err(md_err(&to)(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_in_modified_utf7() {
        assert_eq!(utf7_imap("Sent"), "Sent");
        assert_eq!(utf7_imap("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(utf7_imap("A&B"), "A&-B");
        assert_eq!(utf7_imap("台北"), "&U,BTFw-");
        assert_eq!(utf7_imap("日本語"), "&ZeVnLIqe-");
        assert_eq!(
            utf7_imap("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(imap_name("inbox"), "INBOX");
    }

    #[test]
    fn folder_and_file_names_are_checked() {
        assert!(check_folder("Archive.2024").is_ok());
        assert!(check_folder("").is_err());
        assert!(check_folder("a\nb").is_err());
        assert!(check_folder(&"x".repeat(256)).is_err());
        let root = Path::new("/m");
        assert_eq!(
            maildir_folder(root, "a@b", "Archive.2024").ok(),
            Some(PathBuf::from("/m/a@b/Maildir/.Archive.2024"))
        );
        assert_eq!(
            maildir_folder(root, "a@b", "Inbox").ok(),
            Some(PathBuf::from("/m/a@b/Maildir"))
        );
        for bad in ["../x", "a/b", ".x", "x.", "a..b"] {
            assert!(maildir_folder(root, "a@b", bad).is_err(), "{bad:?}");
        }
        for bad in ["", ".", "..", "a/b", "a:2,S", ".hidden", "a\0"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("1700000000.M1P2.host,S=10").is_ok());
    }

    #[test]
    fn maildir_info_flags() {
        assert_eq!(new_info("", Some(true), None), ":2,S");
        assert_eq!(new_info(":2,S", None, Some(true)), ":2,FS");
        assert_eq!(new_info(":2,FST", Some(false), Some(false)), ":2,T");
        assert_eq!(new_info(":2,aS", None, None), ":2,Sa");
        assert_eq!(
            parse_info_flags(":2,FS"),
            Flags {
                seen: true,
                flagged: true
            }
        );
        assert_eq!(parse_info_flags(":1,S"), Flags::default());
    }

    #[test]
    fn message_id_from_a_header_block() {
        assert_eq!(
            message_id_of(b"Message-ID: <a@b>\r\n\r\n").as_deref(),
            Some("<a@b>")
        );
        assert_eq!(
            message_id_of(b"message-id:\r\n <a@b>\r\n\r\n").as_deref(),
            Some("<a@b>")
        );
        assert_eq!(message_id_of(b"\r\n"), None);
        assert_eq!(quote(r#"<a"\b>"#), r#""<a\"\\b>""#);
    }

    #[test]
    fn copyuid_sets_are_bounded() {
        assert_eq!(
            uids(&[UidSetMember::Uid(4), UidSetMember::UidRange(7..=9)]),
            vec![4, 7, 8, 9]
        );
        assert_eq!(uids(&[UidSetMember::UidRange(1..=u32::MAX)]).len(), 1000);
    }
}
