//! Sending mail from a phone: a [`Composed`] message handed to the mail system.
//!
//! - [`Transport::Smtp`]: to the SMTP server of `[server.mail] smtp` (lettre; plain SMTP, no
//!   TLS yet: loopback or a trusted network, like IMAP), the envelope from
//!   [`Composed::envelope_from`] and [`Composed::recipients`], the bytes
//!   [`Composed::raw`] sent as they are (dot-stuffed by lettre; its final CRLF is the one
//!   before the terminating `.`), 30 s for each step. A 5xx answer (or an address
//!   lettre cannot send to) is [`SendError::Permanent`]; no connection, a 4xx answer or a
//!   timeout is [`SendError::Transient`].
//! - [`Transport::Local`]: the embedded default without an SMTP server: each recipient must
//!   be a user of this server and gets the message in `ROOT/<lower-cased email>/Maildir/new/`
//!   (written in `tmp/`, then hard-linked into `new/`; directories made as needed, never
//!   through a symbolic link), with `Return-Path:` and `Delivered-To:` put in front. The file name is derived from a hash of the Message-ID (or of the bytes
//!   when there is none) and the recipient, so a delivery repeated after a crash finds the
//!   first copy (in `new/`, or in `cur/` with flags) and makes no second one. When any
//!   recipient is not a local user, nothing is delivered to anyone.
//!
//! Owns: handing a composed message to SMTP or to local Maildirs. Must not touch: what the
//! message says ([`super::compose`]), the copy in Sent (`mailbox::access`), SQL, sealing.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::compose::Composed;
use crate::{ServerConfig, ServerError};

/// The longest wait for the SMTP server's connection and for each of its answers.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Says whether an address (lower-cased) is a user of this server.
pub type LocalUsers = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Where mail from devices goes.
#[derive(Clone)]
pub enum Transport {
    /// An SMTP server.
    Smtp {
        /// `host:port`, e.g. `127.0.0.1:25` (`[::1]:25` for IPv6).
        addr: String,
    },
    /// Delivery into this server's own Maildirs (the embedded default).
    Local {
        /// `ROOT` in `ROOT/<email>/Maildir`.
        maildir_root: PathBuf,
        /// Is this address a user of this server?
        users: LocalUsers,
    },
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Smtp { addr } => f.debug_struct("Smtp").field("addr", addr).finish(),
            Transport::Local { maildir_root, .. } => f
                .debug_struct("Local")
                .field("maildir_root", maildir_root)
                .finish_non_exhaustive(),
        }
    }
}

/// A message the mail system took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The recipients it was handed over for (lower-cased), each once.
    pub recipients: Vec<String>,
    /// What the SMTP server answered (`250 2.0.0 Ok: queued as …`), or what local delivery did.
    pub reply: String,
}

/// Why a message was not sent. The text is for the phone user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The mail system refused it for good (an SMTP 5xx answer, an address that cannot be sent
    /// to, no such local user): do not retry.
    #[error("{0}")]
    Permanent(String),
    /// It may work later (no connection, a 4xx answer, a timeout, a local disk error): retry.
    #[error("{0}")]
    Transient(String),
}

impl SendError {
    /// Retrying cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(self, SendError::Permanent(_))
    }
}

/// The transport `[server.mail]` asks for: SMTP when `smtp` is set; local delivery to `users`
/// on the embedded default (no `imap`, no `smtp`).
///
/// # Errors
/// [`ServerError::Config`] when `smtp` is not `host:port`, or when `imap` is set without
/// `smtp` (mail from devices would have nowhere to go).
pub fn transport(cfg: &ServerConfig, users: LocalUsers) -> Result<Transport, ServerError> {
    let m = &cfg.mail;
    match (&m.smtp, &m.imap) {
        (Some(addr), _) => {
            split_addr(addr)
                .map_err(|e| ServerError::Config(format!("[server.mail] smtp = {addr:?}: {e}")))?;
            Ok(Transport::Smtp { addr: addr.clone() })
        }
        (None, Some(imap)) => Err(ServerError::Config(format!(
            "[server.mail] imap = {imap:?} is set but smtp is not: mail sent from devices needs an SMTP server; set [server.mail] smtp = \"host:port\""
        ))),
        (None, None) => {
            let root = m.maildir_root(&cfg.data_dir);
            Ok(Transport::Local {
                maildir_root: std::path::absolute(&root).unwrap_or(root),
                users,
            })
        }
    }
}

impl Transport {
    /// Sends `mail`.
    ///
    /// # Errors
    /// [`SendError::Permanent`] when the mail system refused it for good (nothing was sent);
    /// [`SendError::Transient`] when it may work later (for local delivery: some recipients
    /// may have it already, and a retry does not give them a second copy).
    pub async fn send(&self, mail: &Composed) -> Result<Sent, SendError> {
        match self {
            Transport::Smtp { addr } => smtp_send(addr, mail).await,
            Transport::Local {
                maildir_root,
                users,
            } => local_send(maildir_root, users, mail).await,
        }
    }

    /// Whether mail can be sent: SMTP connects and greets the server (EHLO), then quits; local
    /// delivery makes sure the Maildir root exists. For `bramble serve`'s start-up check.
    ///
    /// # Errors
    /// A [`SendError`] saying what failed.
    pub async fn check(&self) -> Result<(), SendError> {
        match self {
            Transport::Smtp { addr } => {
                let smtp = smtp_client(addr)?;
                match smtp.test_connection().await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(SendError::Transient(format!(
                        "the mail server at {addr} answered, but not as an SMTP server"
                    ))),
                    Err(e) => Err(smtp_error(addr, &e)),
                }
            }
            Transport::Local { maildir_root, .. } => {
                let root = maildir_root.clone();
                tokio::task::spawn_blocking(move || fs::create_dir_all(&root))
                    .await
                    .map_err(|e| SendError::Transient(format!("the check did not finish: {e}")))?
                    .map_err(|e| {
                        SendError::Transient(format!(
                            "cannot create the Maildir root {}: {e}",
                            maildir_root.display()
                        ))
                    })
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SMTP

/// `host:port` → (`host`, port); `[::1]:25` → (`::1`, 25).
fn split_addr(addr: &str) -> Result<(String, u16), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| "not host:port".to_owned())?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| format!("{port:?} is not a port number"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the host name is missing or has spaces".to_owned());
    }
    Ok((host.to_owned(), port))
}

fn smtp_client(addr: &str) -> Result<AsyncSmtpTransport<Tokio1Executor>, SendError> {
    let (host, port) = split_addr(addr).map_err(|e| {
        SendError::Permanent(format!(
            "the mail server address [server.mail] smtp = {addr:?} cannot be used: {e}"
        ))
    })?;
    Ok(
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .timeout(Some(SMTP_TIMEOUT))
            .build(),
    )
}

fn parse_address(a: &str) -> Result<Address, SendError> {
    a.parse::<Address>()
        .map_err(|e| SendError::Permanent(format!("the message cannot be sent to {a:?}: {e}")))
}

/// The recipients, lower-cased, each once, in order.
fn recipients(mail: &Composed) -> Result<Vec<String>, SendError> {
    let mut seen = BTreeSet::new();
    let list: Vec<String> = mail
        .recipients
        .iter()
        .map(|r| r.trim().to_lowercase())
        .filter(|r| seen.insert(r.clone()))
        .collect();
    if list.is_empty() {
        return Err(SendError::Permanent(
            "a message needs at least one recipient".into(),
        ));
    }
    Ok(list)
}

async fn smtp_send(addr: &str, mail: &Composed) -> Result<Sent, SendError> {
    let rcpts = recipients(mail)?;
    let from = match mail.envelope_from.trim() {
        "" => None,
        f => Some(parse_address(f)?),
    };
    let to = rcpts
        .iter()
        .map(|r| parse_address(r))
        .collect::<Result<Vec<_>, _>>()?;
    let envelope = Envelope::new(from, to)
        .map_err(|e| SendError::Permanent(format!("the message cannot be sent: {e}")))?;
    let smtp = smtp_client(addr)?;
    // lettre ends DATA with CRLF "." CRLF after the bytes: without this, a message ending in
    // CRLF (as every composed one does) would arrive with an empty line more
    let raw = mail.raw.strip_suffix(b"\r\n").unwrap_or(&mail.raw);
    match smtp.send_raw(&envelope, raw).await {
        Ok(response) => {
            let reply = format!(
                "{} {}",
                response.code(),
                response.message().collect::<Vec<_>>().join(" ")
            );
            tracing::debug!(smtp = %addr, recipients = rcpts.len(), %reply, "mail sent");
            Ok(Sent {
                recipients: rcpts,
                reply,
            })
        }
        Err(e) => {
            let err = smtp_error(addr, &e);
            tracing::debug!(smtp = %addr, error = ?e, "sending failed: {err}");
            Err(err)
        }
    }
}

/// A lettre error in the user's words: permanent (5xx, or nothing lettre can send) or not.
fn smtp_error(addr: &str, e: &lettre::transport::smtp::Error) -> SendError {
    let detail = std::error::Error::source(e)
        .map(|s| s.to_string())
        .unwrap_or_default();
    let answer = match e.status() {
        Some(code) if detail.is_empty() => code.to_string(),
        Some(code) => format!("{code} {detail}"),
        None => detail.clone(),
    };
    if e.is_permanent() {
        SendError::Permanent(format!("the mail server refused the message: {answer}"))
    } else if e.is_transient() {
        SendError::Transient(format!(
            "the mail server cannot take the message now: {answer}"
        ))
    } else if e.is_timeout() {
        SendError::Transient(format!(
            "the mail server at {addr} did not answer within {SMTP_TIMEOUT:?}"
        ))
    } else if e.is_client() {
        SendError::Permanent(format!("the message cannot be sent: {detail}"))
    } else {
        SendError::Transient(format!("cannot reach the mail server at {addr}: {e}"))
    }
}

// ---------------------------------------------------------------------------------------------
// Local delivery

/// An address that can be a directory name under the Maildir root (as the watchers require).
fn usable_as_dir(addr: &str) -> bool {
    !addr.is_empty()
        && addr.len() <= 254
        && !addr.starts_with('.')
        && addr.contains('@')
        && !addr
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '/' | '\\' | '"' | '*'))
}

async fn local_send(root: &Path, users: &LocalUsers, mail: &Composed) -> Result<Sent, SendError> {
    let rcpts = recipients(mail)?;
    let foreign: Vec<&str> = rcpts
        .iter()
        .filter(|r| !(usable_as_dir(r) && users(r)))
        .map(String::as_str)
        .collect();
    if !foreign.is_empty() {
        return Err(SendError::Permanent(format!(
            "the message cannot be sent to {}: this server has no SMTP server to send mail beyond its own users; set [server.mail] smtp = \"host:port\"",
            foreign.join(", ")
        )));
    }
    let from = mail.envelope_from.trim().to_owned();
    if from
        .chars()
        .any(|c| c.is_control() || matches!(c, '<' | '>'))
    {
        return Err(SendError::Permanent(format!(
            "the sender address {from:?} cannot be used"
        )));
    }
    let root = root.to_owned();
    let raw = mail.raw.clone();
    let list = rcpts.clone();
    let delivered = tokio::task::spawn_blocking(move || -> Result<usize, SendError> {
        let key = delivery_key(&raw);
        let secs = date_secs(&raw);
        let mut fresh = 0;
        for rcpt in &list {
            let name = file_name(secs, &key, rcpt);
            let maildir = root.join(rcpt).join("Maildir");
            match deliver(&maildir, &name, &from, rcpt, &raw) {
                Ok(true) => fresh += 1,
                Ok(false) => {
                    tracing::debug!(mailbox = %rcpt, %name, "already delivered: not again")
                }
                Err(e) => {
                    return Err(SendError::Transient(format!(
                        "cannot deliver the message to {rcpt}: the Maildir {}: {e}",
                        maildir.display()
                    )));
                }
            }
        }
        Ok(fresh)
    })
    .await
    .map_err(|e| SendError::Transient(format!("the delivery did not finish: {e}")))??;
    tracing::debug!(
        recipients = rcpts.len(),
        delivered,
        "mail delivered locally"
    );
    Ok(Sent {
        reply: format!(
            "delivered to {} local mailbox{} ({} already had it)",
            rcpts.len(),
            if rcpts.len() == 1 { "" } else { "es" },
            rcpts.len() - delivered
        ),
        recipients: rcpts,
    })
}

/// The header block of `raw` (up to the first empty line), unfolded: `(name, value)` pairs.
fn headers(raw: &[u8]) -> Vec<(String, String)> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n"))
        .unwrap_or(raw.len().min(64 * 1024));
    let text = String::from_utf8_lossy(&raw[..end.min(64 * 1024)]);
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = out.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    out
}

fn header(raw: &[u8], name: &str) -> Option<String> {
    headers(raw)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// What identifies the message across retries: its Message-ID, else its bytes.
fn delivery_key(raw: &[u8]) -> Vec<u8> {
    match header(raw, "message-id") {
        Some(id) => [b"message-id\0".as_slice(), id.as_bytes()].concat(),
        None => [b"bytes\0".as_slice(), raw].concat(),
    }
}

/// The message's `Date` as seconds since the epoch (0 without one): the file name starts with
/// it, as Maildir names start with a time.
fn date_secs(raw: &[u8]) -> u64 {
    header(raw, "date")
        .and_then(|d| mail_parser::DateTime::parse_rfc822(&d))
        .and_then(|d| u64::try_from(d.to_timestamp()).ok())
        .unwrap_or(0)
}

/// `<date>.<hash of key and recipient>.bramble`: the same for a retried delivery.
fn file_name(secs: u64, key: &[u8], rcpt: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"bramble local delivery\0");
    ctx.update(key);
    ctx.update(b"\0");
    ctx.update(rcpt.as_bytes());
    let digest = ctx.finish();
    format!("{secs}.{}.bramble", hex::encode(&digest.as_ref()[..16]))
}

/// Writes one copy into `maildir/new/name`; `Ok(false)` when it is there already (in `new/`,
/// or in `cur/` with flags).
fn deliver(maildir: &Path, name: &str, from: &str, rcpt: &str, raw: &[u8]) -> io::Result<bool> {
    let user = maildir.parent().unwrap_or(maildir);
    if let Some(root) = user.parent() {
        fs::create_dir_all(root)?;
    }
    for dir in [user, maildir] {
        real_dir(dir)?;
    }
    for sub in ["new", "cur", "tmp"] {
        real_dir(&maildir.join(sub))?;
    }
    if delivered(maildir, name)? {
        return Ok(false);
    }
    let tmp = maildir
        .join("tmp")
        .join(format!("{name}.{:016x}", rand::random::<u64>()));
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        write!(f, "Return-Path: <{from}>\r\nDelivered-To: {rcpt}\r\n")?;
        f.write_all(raw)?;
        f.sync_all()
    })();
    let linked = written.and_then(|()| fs::hard_link(&tmp, maildir.join("new").join(name)));
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        // a concurrent delivery of the same message won
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates the directory `dir` unless it is there; a symbolic link (or a file) in its place is
/// an error: links are not followed into or out of a Maildir.
fn real_dir(dir: &Path) -> io::Result<()> {
    let not_a_dir = || {
        io::Error::other(format!(
            "{} is a symbolic link or not a directory (links are not followed)",
            dir.display()
        ))
    };
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => return Err(not_a_dir()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match fs::symlink_metadata(dir) {
            Ok(m) if m.is_dir() => Ok(()),
            _ => Err(not_a_dir()),
        },
        Err(e) => Err(e),
    }
}

/// Whether `name` is in `new/` or (as `name:2,…`) in `cur/`.
fn delivered(maildir: &Path, name: &str) -> io::Result<bool> {
    match fs::symlink_metadata(maildir.join("new").join(name)) {
        Ok(_) => return Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    for entry in fs::read_dir(maildir.join("cur"))? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(rest) = file_name.to_str().and_then(|f| f.strip_prefix(name)) else {
            continue;
        };
        if rest.is_empty() || rest.starts_with(':') {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_addresses() {
        assert_eq!(split_addr("127.0.0.1:25"), Ok(("127.0.0.1".into(), 25)));
        assert_eq!(split_addr("[::1]:2525"), Ok(("::1".into(), 2525)));
        assert!(split_addr("mail.example.com").is_err());
        assert!(split_addr("host:0").is_err());
        assert!(split_addr(":25").is_err());
    }

    #[test]
    fn file_names_are_stable_per_message_and_recipient() {
        let raw = b"Date: Tue, 1 Jul 2025 10:00:00 +0000\r\nMessage-ID: <a@b>\r\n\r\nhi\r\n";
        let key = delivery_key(raw);
        assert_eq!(date_secs(raw), 1_751_364_000);
        let a = file_name(date_secs(raw), &key, "x@y");
        assert_eq!(a, file_name(date_secs(raw), &key, "x@y"));
        assert_ne!(a, file_name(date_secs(raw), &key, "z@y"));
        assert!(a.starts_with("1751364000.") && a.ends_with(".bramble"));
        // no Message-ID: the bytes decide
        assert_ne!(delivery_key(b"\r\nx"), delivery_key(b"\r\ny"));
    }
}
