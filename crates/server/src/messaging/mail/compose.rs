//! A message from the device turned into RFC 5322 bytes for SMTP: what was typed, addressed
//! as its kind says (new, reply, reply to all, forward), with the original's text appended in
//! a BES-style "-----Original Message-----" block for replies and forwards, and the original's
//! attachments for a forward. No I/O.
//!
//! Owns: the headers and the shape of every message a device sends. Must not touch: the
//! mailbox (the caller hands over the original's bytes), SMTP, the database, sealing.
//! Reads originals only through [`super::content`] and `mail-parser`, guarded as content is.

use std::borrow::Cow;
use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

use bramble_proto::schema::{MailKind, MailSubmit};
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::{BodyPart, MimePart};
use mail_parser::{Addr, HeaderValue, Message, MessageParser};

use super::content;

/// The most recipients (To, Cc and Bcc together, each address once) a message may have.
pub const MAX_RECIPIENTS: usize = 100;
/// The longest subject the device may send, bytes.
pub const MAX_SUBJECT: usize = 1024;
/// The longest text the device may send, bytes.
pub const MAX_BODY: usize = 1024 * 1024;
/// The longest address, bytes (RFC 5321's path limit).
pub const MAX_ADDRESS: usize = 254;
/// The most Message-IDs kept in `References` (the newest).
const MAX_REFERENCES: usize = 20;
/// The longest display name kept, bytes.
const MAX_NAME: usize = 256;
/// The longest line SMTP carries (RFC 5321), without CRLF.
const MAX_LINE: usize = 998;

/// A message the device asked to send, with what the server adds.
#[derive(Debug, Clone, Copy)]
pub struct Draft<'a> {
    /// The user's address: `From` and the envelope sender.
    pub from: &'a str,
    /// The user's name, for `From`.
    pub from_name: Option<&'a str>,
    /// What the device sent.
    pub submit: &'a MailSubmit,
    /// The original's bytes from the mailbox (the message `submit.original_ref_id` names), for
    /// a reply or a forward; `None` when it is no longer there.
    pub original: Option<&'a [u8]>,
    /// The new message's Message-ID, without brackets, chosen by the caller.
    pub message_id: &'a str,
    /// The `Date`, milliseconds since the epoch.
    pub date_ms: i64,
}

/// A message ready for SMTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Composed {
    /// The message, CRLF line ends.
    pub raw: Vec<u8>,
    /// `MAIL FROM`: the user's address.
    pub envelope_from: String,
    /// `RCPT TO`: To, Cc and Bcc, each once, lower case.
    pub recipients: Vec<String>,
}

/// Why a message could not be put together; each message is meant for the phone user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComposeError {
    /// An address (typed, or the user's own) is not an email address.
    #[error("the address {0:?} is not an email address")]
    BadAddress(String),
    /// No To, Cc or Bcc (after a reply's own additions).
    #[error("a message needs at least one recipient")]
    NoRecipients,
    /// More than [`MAX_RECIPIENTS`] different addresses.
    #[error("a message can go to at most {max} recipients; this one would go to {count}")]
    TooManyRecipients {
        /// How many there would be.
        count: usize,
        /// [`MAX_RECIPIENTS`].
        max: usize,
    },
    /// The subject is over [`MAX_SUBJECT`].
    #[error("the subject is too long ({len} bytes; at most {max})")]
    SubjectTooLong {
        /// Its length in bytes.
        len: usize,
        /// [`MAX_SUBJECT`].
        max: usize,
    },
    /// The text is over [`MAX_BODY`].
    #[error("the message is too long ({len} bytes of text; at most {max})")]
    BodyTooLong {
        /// Its length in bytes.
        len: usize,
        /// [`MAX_BODY`].
        max: usize,
    },
    /// A reply or forward without the original's bytes.
    #[error("the original message is no longer in the mailbox")]
    OriginalMissing,
    /// The original's bytes are not a message the server can read.
    #[error("the original message could not be read")]
    OriginalUnreadable,
    /// A `MailKind` this server does not know (a newer device).
    #[error("this kind of message ({0}) cannot be sent by this server")]
    UnknownKind(i32),
    /// The caller's Message-ID is not usable (a bug, not the user's doing).
    #[error("the message could not be given an identifier")]
    BadMessageId,
    /// The message builder failed (a bug, not the user's doing).
    #[error("the message could not be put together: {0}")]
    Build(String),
}

/// Puts the draft together: headers, text, the original for replies and forwards.
pub fn compose(d: &Draft<'_>) -> Result<Composed, ComposeError> {
    let submit = d.submit;
    let kind =
        MailKind::try_from(submit.kind).map_err(|_| ComposeError::UnknownKind(submit.kind))?;
    let from = Recipient {
        name: d
            .from_name
            .map(|n| one_line(n, MAX_NAME))
            .filter(|n| !n.is_empty()),
        address: checked_address(d.from)?,
    };
    if submit.subject.len() > MAX_SUBJECT {
        return Err(ComposeError::SubjectTooLong {
            len: submit.subject.len(),
            max: MAX_SUBJECT,
        });
    }
    if submit.body.len() > MAX_BODY {
        return Err(ComposeError::BodyTooLong {
            len: submit.body.len(),
            max: MAX_BODY,
        });
    }
    if !is_message_id(d.message_id) {
        return Err(ComposeError::BadMessageId);
    }
    let original = match kind {
        MailKind::MailNew => None,
        MailKind::MailReply | MailKind::MailReplyAll | MailKind::MailForward => {
            let raw = d.original.ok_or(ComposeError::OriginalMissing)?;
            Some(Original::read(raw)?)
        }
    };

    // Recipients: To, then Cc, then Bcc; each address once, where it first appears.
    let mut seen = HashSet::new();
    let mut to = Vec::new();
    let mut cc = Vec::new();
    let mut bcc = Vec::new();
    if let Some(o) = &original {
        match kind {
            MailKind::MailReply | MailKind::MailReplyAll => {
                let answer = if o.reply_to.is_empty() {
                    &o.from
                } else {
                    &o.reply_to
                };
                add_all(&mut to, &mut seen, answer.iter().cloned());
            }
            MailKind::MailNew | MailKind::MailForward => {}
        }
    }
    add_all(&mut to, &mut seen, typed(&submit.to)?);
    if let (Some(o), MailKind::MailReplyAll) = (&original, kind) {
        let own = from.address.to_lowercase();
        let others =
            o.to.iter()
                .chain(&o.cc)
                .filter(|r| r.address.to_lowercase() != own);
        add_all(&mut cc, &mut seen, others.cloned());
    }
    add_all(&mut cc, &mut seen, typed(&submit.cc)?);
    add_all(&mut bcc, &mut seen, typed(&submit.bcc)?);
    let recipients: Vec<String> = to
        .iter()
        .chain(&cc)
        .chain(&bcc)
        .map(|r| r.address.to_lowercase())
        .collect();
    if recipients.is_empty() {
        return Err(ComposeError::NoRecipients);
    }
    if recipients.len() > MAX_RECIPIENTS {
        return Err(ComposeError::TooManyRecipients {
            count: recipients.len(),
            max: MAX_RECIPIENTS,
        });
    }

    let typed_subject = one_line(&submit.subject, MAX_SUBJECT);
    let subject = match (&original, kind) {
        (Some(o), MailKind::MailReply | MailKind::MailReplyAll) if typed_subject.is_empty() => {
            prefixed("Re: ", &["re:"], &o.summary.subject)
        }
        (Some(o), MailKind::MailForward) if typed_subject.is_empty() => {
            prefixed("Fw: ", &["fw:", "fwd:"], &o.summary.subject)
        }
        _ => typed_subject,
    };

    // SMTP wants CRLF and nothing bare: the builder turns each `\n` into CRLF.
    let mut body = submit.body.replace("\r\n", "\n").replace('\r', "\n");
    if let Some(o) = &original {
        body.push_str(&o.quoted());
    }

    // A forward carries the original's attachments, as BES did.
    let forwarded = match (d.original, kind) {
        (Some(raw), MailKind::MailForward) => content::attachments(raw),
        _ => Vec::new(),
    };
    let mut builder = MessageBuilder::new().from(from.to_header());
    builder = if to.is_empty() && cc.is_empty() {
        builder.header("To", Raw::new("undisclosed-recipients:;"))
    } else if to.is_empty() {
        builder
    } else {
        builder.to(address_list(&to))
    };
    if !cc.is_empty() {
        builder = builder.cc(address_list(&cc));
    }
    builder = builder
        .subject(subject)
        .date(d.date_ms.div_euclid(1000))
        .message_id(d.message_id);
    if let (Some(o), MailKind::MailReply | MailKind::MailReplyAll) = (&original, kind)
        && let Some(id) = &o.message_id
    {
        builder = builder.in_reply_to(id.as_str());
        let mut refs: Vec<&str> = o.references.iter().map(String::as_str).collect();
        refs.push(id);
        let skip = refs.len().saturating_sub(MAX_REFERENCES);
        builder = builder.references(MessageId::new_list(refs.into_iter().skip(skip)));
    }
    builder = builder
        .header("MIME-Version", Raw::new("1.0"))
        .header("X-Mailer", Raw::new("Bramble"))
        .text_body(body);
    for a in &forwarded {
        let part = message_part(a).unwrap_or_else(|| {
            MimePart::new(
                attachment_type(&a.content_type),
                BodyPart::Binary(Cow::Borrowed(a.data.as_slice())),
            )
            .attachment(a.name.as_str())
        });
        builder.attachments.get_or_insert_with(Vec::new).push(part);
    }
    let raw = builder
        .write_to_vec()
        .map_err(|e| ComposeError::Build(e.to_string()))?;
    Ok(Composed {
        raw,
        envelope_from: from.address,
        recipients,
    })
}

/// An address in a header, with its display name when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Recipient {
    name: Option<String>,
    address: String,
}

impl Recipient {
    fn to_header(&self) -> Address<'_> {
        Address::new_address(self.name.as_deref(), self.address.as_str())
    }
}

fn address_list(list: &[Recipient]) -> Address<'_> {
    Address::new_list(list.iter().map(Recipient::to_header).collect())
}

/// Appends the recipients not seen yet.
fn add_all(
    list: &mut Vec<Recipient>,
    seen: &mut HashSet<String>,
    add: impl IntoIterator<Item = Recipient>,
) {
    for r in add {
        if seen.insert(r.address.to_lowercase()) {
            list.push(r);
        }
    }
}

/// Addresses the user typed: `address` or `Name <address>`; blank entries are skipped.
fn typed(entries: &[String]) -> Result<Vec<Recipient>, ComposeError> {
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let (name, address) = match entry.strip_suffix('>').and_then(|e| e.rsplit_once('<')) {
            Some((name, address)) => {
                let name = name.trim().trim_matches('"').trim();
                (
                    Some(one_line(name, MAX_NAME)).filter(|n| !n.is_empty()),
                    address,
                )
            }
            None => (None, entry),
        };
        let address =
            checked_address(address).map_err(|_| ComposeError::BadAddress(shown(entry)))?;
        out.push(Recipient { name, address });
    }
    Ok(out)
}

/// `address`, trimmed, when it looks like an email address: one `@`, a local part and a
/// domain, no blanks, control characters or the characters that delimit addresses.
fn checked_address(address: &str) -> Result<String, ComposeError> {
    let address = address.trim();
    let bad = || ComposeError::BadAddress(shown(address));
    if address.len() > MAX_ADDRESS {
        return Err(bad());
    }
    let Some((local, domain)) = address.split_once('@') else {
        return Err(bad());
    };
    let forbidden = |c: char| c.is_whitespace() || c.is_control() || "<>()[]\\,;:\"@".contains(c);
    let ok = !local.is_empty()
        && local.len() <= 64
        && !domain.is_empty()
        && !local.chars().any(forbidden)
        && !domain.chars().any(forbidden)
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && domain
            .split('.')
            .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
    if ok {
        Ok(address.to_owned())
    } else {
        Err(bad())
    }
}

/// What the user typed, short enough to repeat in an error.
fn shown(entry: &str) -> String {
    const MAX: usize = 80;
    if entry.len() <= MAX {
        entry.to_owned()
    } else {
        format!("{}…", &entry[..entry.floor_char_boundary(MAX)])
    }
}

/// A Message-ID (without brackets) that can be written as it is.
fn is_message_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= content::MAX_MESSAGE_ID
        && !id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>".contains(c))
}

/// `prefix` + `subject`, unless the subject already starts with one of `already` (any case).
fn prefixed(prefix: &str, already: &[&str], subject: &str) -> String {
    let lower = subject.trim_start().to_lowercase();
    if already.iter().any(|a| lower.starts_with(a)) {
        return subject.to_owned();
    }
    let subject = format!("{prefix}{subject}");
    subject[..subject.floor_char_boundary(MAX_SUBJECT)]
        .trim_end()
        .to_owned()
}

/// One line of at most `max` bytes: control characters become spaces.
fn one_line(text: &str, max: usize) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let line = line.trim();
    line[..line.floor_char_boundary(max)].trim_end().to_owned()
}

/// What a reply or forward takes from the original.
struct Original {
    /// Headers as the device shows them.
    summary: bramble_proto::schema::MailHeaders,
    /// The `Date` as written, for "Sent:".
    date: Option<String>,
    from: Vec<Recipient>,
    reply_to: Vec<Recipient>,
    to: Vec<Recipient>,
    cc: Vec<Recipient>,
    message_id: Option<String>,
    references: Vec<String>,
    text: String,
}

/// The original's header fields, read by mail-parser.
struct OriginalHeaders {
    date: Option<String>,
    from: Vec<Recipient>,
    reply_to: Vec<Recipient>,
    to: Vec<Recipient>,
    cc: Vec<Recipient>,
    references: Vec<String>,
}

impl Original {
    fn read(raw: &[u8]) -> Result<Original, ComposeError> {
        let headers = catch_unwind(AssertUnwindSafe(|| {
            let message = MessageParser::new().parse_headers(raw)?;
            (!message.parts.is_empty()).then(|| OriginalHeaders::from_message(&message))
        }))
        .ok()
        .flatten()
        .ok_or(ComposeError::OriginalUnreadable)?;
        let summary = content::summarize(raw, raw.len() as u64);
        Ok(Original {
            summary: summary.item.headers.unwrap_or_default(),
            message_id: summary.message_id.filter(|id| is_message_id(id)),
            date: headers.date,
            from: headers.from,
            reply_to: headers.reply_to,
            to: headers.to,
            cc: headers.cc,
            references: headers.references,
            text: content::body_text(raw),
        })
    }

    /// The BES-style block appended to a reply or forward.
    fn quoted(&self) -> String {
        let h = &self.summary;
        let mut out = String::from("\n\n-----Original Message-----\n");
        out.push_str(&format!("From: {}\n", h.from));
        if let Some(date) = &self.date {
            out.push_str(&format!("Sent: {date}\n"));
        }
        out.push_str(&format!("To: {}\n", h.to.join("; ")));
        if !h.cc.is_empty() {
            out.push_str(&format!("Cc: {}\n", h.cc.join("; ")));
        }
        out.push_str(&format!("Subject: {}\n\n", h.subject));
        out.push_str(&self.text);
        out
    }
}

impl OriginalHeaders {
    /// `message.parts` must not be empty.
    fn from_message(message: &Message<'_>) -> OriginalHeaders {
        let list = |addrs: Vec<&Addr<'_>>| -> Vec<Recipient> {
            addrs
                .into_iter()
                .filter_map(|a| {
                    let address = checked_address(a.address.as_deref()?).ok()?;
                    let name = a
                        .name
                        .as_deref()
                        .map(|n| one_line(n, MAX_NAME))
                        .filter(|n| !n.is_empty());
                    Some(Recipient { name, address })
                })
                .take(MAX_RECIPIENTS + 1)
                .collect()
        };
        let date = message
            .date()
            .filter(|d| d.is_valid())
            .map(|d| d.to_rfc822());
        let references = match message.references() {
            HeaderValue::Text(id) => vec![id.to_string()],
            HeaderValue::TextList(ids) => ids.iter().map(|id| id.to_string()).collect(),
            _ => Vec::new(),
        };
        let skip = references.len().saturating_sub(MAX_REFERENCES);
        OriginalHeaders {
            date,
            from: list(
                message
                    .from()
                    .map(|a| a.iter().collect())
                    .unwrap_or_default(),
            ),
            reply_to: list(
                message
                    .reply_to()
                    .map(|a| a.iter().collect())
                    .unwrap_or_default(),
            ),
            to: list(message.all_to().flat_map(|a| a.iter()).collect()),
            cc: list(message.all_cc().flat_map(|a| a.iter()).collect()),
            references: references
                .into_iter()
                .skip(skip)
                .filter(|id| is_message_id(id))
                .collect(),
        }
    }
}

/// The Content-Type a forwarded attachment is sent with: text in UTF-8, as
/// [`content::Attachment`] holds it.
fn attachment_type(content_type: &str) -> ContentType<'_> {
    let ct = ContentType::new(content_type);
    if content_type.starts_with("text/") {
        ct.attribute("charset", "utf-8")
    } else {
        ct
    }
}

/// An attached message (`message/rfc822`) as it is, with CRLF line ends (7bit or 8bit: RFC 2046,
/// 5.2.1, allows no base64 here), when no line is over SMTP's limit; otherwise `None` and it goes
/// as any other attachment (base64).
fn message_part(a: &content::Attachment) -> Option<MimePart<'_>> {
    if a.content_type != "message/rfc822" {
        return None;
    }
    let data = crlf(&a.data);
    if data
        .split(|&b| b == b'\n')
        .any(|line| line.len() > MAX_LINE + 1)
    {
        return None;
    }
    let encoding = if data.is_ascii() { "7bit" } else { "8bit" };
    Some(
        MimePart::new("message/rfc822", BodyPart::Binary(Cow::Owned(data)))
            .attachment(a.name.as_str())
            .transfer_encoding(encoding),
    )
}

/// `data` with every line ending in CRLF.
fn crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 32);
    let mut prev = 0u8;
    for &b in data {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        } else if prev == b'\r' && b != b'\n' {
            out.push(b'\n');
        }
        out.push(b);
        prev = b;
    }
    if prev == b'\r' {
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use mail_parser::{MimeHeaders, PartType};

    use super::*;

    const ME: &str = "bob@example.test";

    fn submit(kind: MailKind, to: &[&str], cc: &[&str], bcc: &[&str]) -> MailSubmit {
        MailSubmit {
            client_id: 7,
            kind: kind as i32,
            original_ref_id: 0,
            to: to.iter().map(|s| s.to_string()).collect(),
            cc: cc.iter().map(|s| s.to_string()).collect(),
            bcc: bcc.iter().map(|s| s.to_string()).collect(),
            subject: String::new(),
            body: "Typed on the phone.".to_owned(),
        }
    }

    fn draft<'a>(submit: &'a MailSubmit, original: Option<&'a [u8]>) -> Draft<'a> {
        Draft {
            from: ME,
            from_name: Some("Bob Builder"),
            submit,
            original,
            message_id: "new1@bramble.test",
            date_ms: 1_740_996_900_000,
        }
    }

    fn parse(raw: &[u8]) -> Message<'_> {
        MessageParser::new()
            .parse(raw)
            .expect("composed message parses")
    }

    fn addresses(a: Option<&mail_parser::Address<'_>>) -> Vec<String> {
        a.map(|a| {
            a.iter()
                .filter_map(|a| a.address.as_deref().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
    }

    fn original() -> Vec<u8> {
        format!(
            "From: Alice <alice@example.test>\r\n\
             To: Bob <Bob@Example.test>, carol@example.test\r\n\
             Cc: dave@example.test, alice@example.test\r\n\
             Subject: Lunch\r\n\
             Date: Mon, 3 Mar 2025 11:15:00 +0100\r\n\
             Message-ID: <orig1@example.test>\r\n\
             References: <r0@example.test> <r1@example.test>\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"o\"\r\n\r\n\
             --o\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nNoon at the usual place?\r\n\
             --o\r\nContent-Type: application/pdf; name=\"menu.pdf\"\r\n\
             Content-Disposition: attachment; filename=\"menu.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}\r\n\
             --o\r\nContent-Type: message/rfc822\r\n\r\n\
             From: eve@example.test\r\nSubject: Old news\r\n\r\nan attached message\r\n\
             --o--\r\n",
            content::tests::b64(&MENU)
        )
        .into_bytes()
    }

    const MENU: [u8; 8] = [0x25, 0x50, 0x44, 0x46, 0x00, 0xff, 0x80, 0x0a];

    #[test]
    fn a_new_message() {
        let mut s = submit(
            MailKind::MailNew,
            &["Carol <Carol@Example.test>", "dave@example.test"],
            &["erin@example.test", "carol@example.test"],
            &["secret@example.test"],
        );
        s.subject = "Plans für heute".to_owned();
        s.body = "Line one\nLine two — ünïcode\n".to_owned();
        let c = compose(&draft(&s, None)).expect("composed");
        assert_eq!(c.envelope_from, ME);
        assert_eq!(
            c.recipients,
            [
                "carol@example.test",
                "dave@example.test",
                "erin@example.test",
                "secret@example.test"
            ]
        );
        let text = String::from_utf8_lossy(&c.raw);
        assert!(!text.to_lowercase().contains("secret@"), "{text}");
        assert!(!text.to_lowercase().contains("bcc"), "{text}");
        assert!(text.contains("\r\nX-Mailer: Bramble\r\n"));
        assert!(!c.raw.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
        let m = parse(&c.raw);
        let from = m.from().and_then(|a| a.first()).expect("From");
        assert_eq!(from.address.as_deref(), Some(ME));
        assert_eq!(from.name.as_deref(), Some("Bob Builder"));
        assert_eq!(
            addresses(m.to()),
            ["Carol@Example.test", "dave@example.test"]
        );
        assert_eq!(
            m.to()
                .and_then(|a| a.first())
                .and_then(|a| a.name.as_deref()),
            Some("Carol")
        );
        assert_eq!(addresses(m.cc()), ["erin@example.test"]);
        assert!(m.bcc().is_none());
        assert_eq!(m.subject(), Some("Plans für heute"));
        assert_eq!(m.message_id(), Some("new1@bramble.test"));
        assert_eq!(m.date().map(|d| d.to_timestamp()), Some(1_740_996_900));
        assert_eq!(m.header_raw("MIME-Version").map(str::trim), Some("1.0"));
        let body = m.body_text(0).expect("body").replace("\r\n", "\n");
        assert_eq!(body, "Line one\nLine two — ünïcode\n");
        assert!(m.in_reply_to().is_empty());
        assert_eq!(m.attachment_count(), 0);
    }

    #[test]
    fn line_ends_are_crlf_and_nothing_bare() {
        for body in ["a\rb\nc\r\nd", "ascii\r\r\n", "ünï\rcode\n\n"] {
            let mut s = submit(MailKind::MailNew, &["x@example.test"], &[], &[]);
            s.body = body.to_owned();
            let c = compose(&draft(&s, None)).expect("composed");
            for (i, &b) in c.raw.iter().enumerate() {
                let next = c.raw.get(i + 1).copied();
                let prev = i.checked_sub(1).map(|p| c.raw[p]);
                assert!(b != b'\r' || next == Some(b'\n'), "bare CR in {body:?}");
                assert!(b != b'\n' || prev == Some(b'\r'), "bare LF in {body:?}");
            }
        }
    }

    #[test]
    fn a_message_with_only_bcc_is_to_undisclosed_recipients() {
        let s = submit(MailKind::MailNew, &[], &[], &["hidden@example.test"]);
        let c = compose(&draft(&s, None)).expect("composed");
        assert_eq!(c.recipients, ["hidden@example.test"]);
        let text = String::from_utf8_lossy(&c.raw);
        assert!(
            text.contains("\r\nTo: undisclosed-recipients:;\r\n"),
            "{text}"
        );
        assert!(!text.contains("hidden"));
    }

    #[test]
    fn a_reply_goes_to_the_sender_with_the_original_below() {
        let orig = original();
        let s = submit(MailKind::MailReply, &["frank@example.test"], &[], &[]);
        let c = compose(&draft(&s, Some(&orig))).expect("composed");
        assert_eq!(c.recipients, ["alice@example.test", "frank@example.test"]);
        let m = parse(&c.raw);
        assert_eq!(
            addresses(m.to()),
            ["alice@example.test", "frank@example.test"]
        );
        assert!(m.cc().is_none());
        assert_eq!(m.subject(), Some("Re: Lunch"));
        assert_eq!(m.in_reply_to().as_text(), Some("orig1@example.test"));
        assert_eq!(
            m.references().as_text_list().map(|l| l.to_vec()),
            Some(vec![
                "r0@example.test".into(),
                "r1@example.test".into(),
                "orig1@example.test".into()
            ])
        );
        let body = m.body_text(0).expect("body").replace("\r\n", "\n");
        assert_eq!(
            body,
            "Typed on the phone.\n\n-----Original Message-----\n\
             From: Alice <alice@example.test>\n\
             Sent: Mon, 3 Mar 2025 11:15:00 +0100\n\
             To: Bob <Bob@Example.test>; carol@example.test\n\
             Cc: dave@example.test; alice@example.test\n\
             Subject: Lunch\n\nNoon at the usual place?"
        );
        // a reply carries no attachments
        assert_eq!(m.attachment_count(), 0);
    }

    #[test]
    fn a_reply_goes_to_reply_to_and_keeps_a_re_subject() {
        let orig = b"From: list@example.test\r\nReply-To: Team <team@example.test>\r\n\
            Subject: RE: status\r\nMessage-ID: <s1@example.test>\r\n\r\nok\r\n";
        let s = submit(MailKind::MailReply, &[], &[], &[]);
        let c = compose(&draft(&s, Some(orig))).expect("composed");
        assert_eq!(c.recipients, ["team@example.test"]);
        let m = parse(&c.raw);
        assert_eq!(m.subject(), Some("RE: status"));
        assert_eq!(m.references().as_text(), Some("s1@example.test"));
        // a subject the user typed wins
        let mut s = submit(MailKind::MailReply, &[], &[], &[]);
        s.subject = "Re: status, updated".to_owned();
        let c = compose(&draft(&s, Some(orig))).expect("composed");
        assert_eq!(parse(&c.raw).subject(), Some("Re: status, updated"));
    }

    #[test]
    fn reply_all_copies_everyone_but_the_user() {
        let orig = original();
        let s = submit(MailKind::MailReplyAll, &[], &["grace@example.test"], &[]);
        let c = compose(&draft(&s, Some(&orig))).expect("composed");
        assert_eq!(
            c.recipients,
            [
                "alice@example.test",
                "carol@example.test",
                "dave@example.test",
                "grace@example.test"
            ]
        );
        let m = parse(&c.raw);
        assert_eq!(addresses(m.to()), ["alice@example.test"]);
        assert_eq!(
            addresses(m.cc()),
            [
                "carol@example.test",
                "dave@example.test",
                "grace@example.test"
            ]
        );
        assert_eq!(m.subject(), Some("Re: Lunch"));
        assert_eq!(m.in_reply_to().as_text(), Some("orig1@example.test"));
    }

    #[test]
    fn a_forward_carries_the_original_attachments() {
        let orig = original();
        let s = submit(MailKind::MailForward, &["heidi@example.test"], &[], &[]);
        let c = compose(&draft(&s, Some(&orig))).expect("composed");
        assert_eq!(c.recipients, ["heidi@example.test"]);
        let m = parse(&c.raw);
        // an attached message goes as it is, not in base64 (RFC 2046, 5.2.1)
        let text = String::from_utf8_lossy(&c.raw);
        assert!(text.contains(
            "Content-Type: message/rfc822\r\nContent-Disposition: attachment; \
             filename=\"Old news.eml\"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n\
             From: eve@example.test\r\n"
        ));
        assert_eq!(m.subject(), Some("Fw: Lunch"));
        assert!(m.in_reply_to().is_empty());
        let body = m.body_text(0).expect("body");
        assert!(body.starts_with("Typed on the phone.\r\n\r\n-----Original Message-----\r\n"));
        assert!(body.ends_with("Noon at the usual place?"), "{body:?}");
        assert_eq!(m.attachment_count(), 2);
        let pdf = m.attachment(0).expect("the pdf");
        assert_eq!(pdf.attachment_name(), Some("menu.pdf"));
        assert!(pdf.is_content_type("application", "pdf"));
        assert_eq!(pdf.contents(), MENU);
        let eml = m.attachment(1).expect("the attached message");
        assert_eq!(eml.attachment_name(), Some("Old news.eml"));
        assert!(eml.is_content_type("message", "rfc822"));
        match &eml.body {
            PartType::Message(inner) => {
                assert_eq!(inner.subject(), Some("Old news"));
                assert_eq!(inner.body_text(0).as_deref(), Some("an attached message"));
            }
            other => panic!("not a message: {other:?}"),
        }
        // what the device will see of it
        let seen = content::summarize(&c.raw, c.raw.len() as u64);
        let names: Vec<&str> = seen
            .item
            .attachments
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        assert_eq!(names, ["menu.pdf", "Old news.eml"]);
        // Fwd: is kept; a forward needs a recipient
        let orig = b"From: a@example.test\r\nSubject: Fwd: x\r\n\r\nhi\r\n";
        let s = submit(MailKind::MailForward, &["i@example.test"], &[], &[]);
        let c = compose(&draft(&s, Some(orig))).expect("composed");
        assert_eq!(parse(&c.raw).subject(), Some("Fwd: x"));
        let s = submit(MailKind::MailForward, &[], &[], &[]);
        assert_eq!(
            compose(&draft(&s, Some(orig))),
            Err(ComposeError::NoRecipients)
        );
    }

    #[test]
    fn bad_addresses_are_refused() {
        for bad in [
            "bob",
            "a b@example.test",
            "a@b@example.test",
            "@example.test",
            "bob@",
            "bob@exa mple.test",
            "bob@example..test",
            "bob@example.test\r\nBcc: x@example.test",
            "<bob@example.test",
            "bob@example.test>",
            "Bob <bob>",
            "bob@example.test, carol@example.test",
        ] {
            let s = submit(MailKind::MailNew, &[bad], &[], &[]);
            let err = compose(&draft(&s, None)).expect_err(bad);
            assert!(
                matches!(err, ComposeError::BadAddress(_)),
                "{bad:?}: {err:?}"
            );
            assert!(err.to_string().contains("is not an email address"), "{err}");
        }
        let s = submit(MailKind::MailNew, &["x@example.test"], &[], &[]);
        let mut d = draft(&s, None);
        d.from = "not an address";
        assert_eq!(
            compose(&d),
            Err(ComposeError::BadAddress("not an address".to_owned()))
        );
        assert_eq!(
            ComposeError::BadAddress("bob".to_owned()).to_string(),
            "the address \"bob\" is not an email address"
        );
        // but a name with the address is fine
        let s = submit(
            MailKind::MailNew,
            &["\"Doe, Jane\" <jane@example.test>"],
            &[],
            &[],
        );
        let c = compose(&draft(&s, None)).expect("composed");
        let m = parse(&c.raw);
        assert_eq!(
            m.to()
                .and_then(|a| a.first())
                .and_then(|a| a.name.as_deref()),
            Some("Doe, Jane")
        );
    }

    #[test]
    fn limits_and_missing_pieces_are_errors() {
        let s = submit(MailKind::MailNew, &[], &[], &[]);
        assert_eq!(compose(&draft(&s, None)), Err(ComposeError::NoRecipients));
        for kind in [
            MailKind::MailReply,
            MailKind::MailReplyAll,
            MailKind::MailForward,
        ] {
            let s = submit(kind, &["x@example.test"], &[], &[]);
            assert_eq!(
                compose(&draft(&s, None)),
                Err(ComposeError::OriginalMissing)
            );
        }
        let mut s = submit(MailKind::MailNew, &["x@example.test"], &[], &[]);
        s.kind = 99;
        assert_eq!(
            compose(&draft(&s, None)),
            Err(ComposeError::UnknownKind(99))
        );
        let many: Vec<String> = (0..=MAX_RECIPIENTS)
            .map(|i| format!("u{i}@example.test"))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let s = submit(MailKind::MailNew, &many, &[], &[]);
        assert_eq!(
            compose(&draft(&s, None)),
            Err(ComposeError::TooManyRecipients {
                count: MAX_RECIPIENTS + 1,
                max: MAX_RECIPIENTS
            })
        );
        // the same address many times is one recipient
        let same = vec!["x@example.test"; 500];
        let s = submit(MailKind::MailNew, &same, &same, &same);
        assert_eq!(
            compose(&draft(&s, None))
                .expect("composed")
                .recipients
                .len(),
            1
        );
        let mut s = submit(MailKind::MailNew, &["x@example.test"], &[], &[]);
        s.subject = "s".repeat(MAX_SUBJECT + 1);
        assert!(matches!(
            compose(&draft(&s, None)),
            Err(ComposeError::SubjectTooLong { .. })
        ));
        let mut s = submit(MailKind::MailNew, &["x@example.test"], &[], &[]);
        s.body = "b".repeat(MAX_BODY + 1);
        assert!(matches!(
            compose(&draft(&s, None)),
            Err(ComposeError::BodyTooLong { .. })
        ));
        let s = submit(MailKind::MailNew, &["x@example.test"], &[], &[]);
        let mut d = draft(&s, None);
        d.message_id = "<a b>";
        assert_eq!(compose(&d), Err(ComposeError::BadMessageId));
        // an original that is no message at all
        let s = submit(MailKind::MailReply, &["x@example.test"], &[], &[]);
        assert_eq!(
            compose(&draft(&s, Some(b""))),
            Err(ComposeError::OriginalUnreadable)
        );
    }

    #[test]
    fn control_characters_do_not_reach_the_headers() {
        let mut s = submit(MailKind::MailNew, &["x@example.test"], &[], &[]);
        s.subject = "hi\r\nBcc: evil@example.test".to_owned();
        let mut d = draft(&s, None);
        d.from_name = Some("Bob\r\nX-Evil: 1");
        let c = compose(&d).expect("composed");
        let text = String::from_utf8_lossy(&c.raw);
        assert!(!text.contains("\r\nBcc:"), "{text}");
        assert!(!text.contains("\r\nX-Evil:"), "{text}");
        assert_eq!(c.recipients, ["x@example.test"]);
    }

    #[test]
    fn hostile_originals_do_not_panic() {
        let orig = original();
        for kind in [
            MailKind::MailReply,
            MailKind::MailReplyAll,
            MailKind::MailForward,
        ] {
            let s = submit(kind, &["x@example.test"], &[], &[]);
            for n in 0..orig.len() {
                let _ = compose(&draft(&s, Some(&orig[..n])));
            }
        }
    }
}
