//! A message from the mailbox, as bytes, turned into what the device sees: its headers, the
//! start of its text and its attachment list ([`summarize`]), the rest of its text for "More"
//! ([`body_text`], [`more`]) and its attachments ([`attachment`], [`attachments`]). No I/O.
//!
//! Every byte is hostile: each size is bounded, nothing is `unwrap`ped and a panic in the MIME
//! parser is caught; what could not be shown is said in [`MailItem::notes`], in
//! sentences for the phone user.
//!
//! Owns: how a message reads on the device (which text, which attachments and their numbering).
//! Must not touch: the mailbox, the database, sealing, anything else in this crate — it depends
//! only on `bramble-proto` and `mail-parser`, because the `mail_content` fuzz target compiles
//! this file on its own (`fuzz/fuzz_targets/mail_content.rs`).

use std::borrow::Cow;
use std::panic::{AssertUnwindSafe, catch_unwind};

use bramble_proto::schema::{AttachmentInfo, Importance, MailHeaders, MailItem};
use mail_parser::{
    Addr, HeaderName, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType,
};

/// The most text a [`MailItem`] carries, and the size of each part "More" gives.
pub const PREVIEW_BYTES: usize = 2048;
/// The most body text [`body_text`] gives; longer text is cut and ends with a sentence saying so.
pub const MAX_BODY_TEXT: usize = 1024 * 1024;
/// The most text one "More all" answer gives ([`more`] with `all`).
pub const MORE_ALL_BYTES: usize = 256 * 1024;
/// The most bytes [`summarize`] and [`body_text`] parse; the rest is treated as cut off.
pub const MAX_PARSE_BYTES: usize = 64 * 1024 * 1024;
/// The most attachments listed in a [`MailItem`] (and given by [`attachments`]).
pub const MAX_ATTACHMENTS: usize = 100;
/// The longest attachment name, bytes.
pub const MAX_ATTACHMENT_NAME: usize = 255;
/// The longest subject, bytes.
pub const MAX_SUBJECT: usize = 1024;
/// The longest address (`Name <address>`), bytes.
pub const MAX_ADDRESS: usize = 320;
/// The most addresses listed per field (To, Cc).
pub const MAX_ADDRESSES: usize = 100;
/// The longest Message-ID kept, bytes (a longer one is dropped, not cut).
pub const MAX_MESSAGE_ID: usize = 998;
/// What the parser puts for bytes that are not text in their character set.
const REPLACEMENT: char = '\u{FFFD}';
/// The longest content type ("type/subtype"), bytes.
const MAX_CONTENT_TYPE: usize = 127;

/// What the device is sent about a new message.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Headers, text, attachments, size and notes; `ref_id`, `folder`, `priority`, `flags` and
    /// `resent` are left at their defaults for the caller to set.
    pub item: MailItem,
    /// The Message-ID, without brackets (the same as `item.headers.message_id`, `None` when
    /// there is none).
    pub message_id: Option<String>,
}

/// One attachment, decoded from its transfer encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// As listed in [`AttachmentInfo::name`].
    pub name: String,
    /// "type/subtype", lower case.
    pub content_type: String,
    /// The attachment's bytes in their original form; text attachments (`text/*`) in UTF-8,
    /// attached messages (`message/rfc822`) as the message's bytes.
    pub data: Vec<u8>,
}

/// Reads a message (or the first `raw.len()` bytes of one that is `size` bytes long) into what
/// the device is shown. Never fails: what could not be read is said in `item.notes`.
///
/// `item.text_total` is the length of [`body_text`] of the same bytes, so "More" offsets into
/// that text line up with `item.text`.
pub fn summarize(raw: &[u8], size: u64) -> Summary {
    let (raw, read) = bounded(raw);
    let truncated = read < size;
    let read_message = guarded(|| {
        MessageParser::new()
            .parse(raw)
            .filter(|m| !m.parts.is_empty())
            .map(|m| Read::from_message(&m))
    })
    .flatten();
    let read_message = match read_message {
        Some(r) => r,
        // The whole parse failed: try the headers alone.
        None => {
            let mut r = guarded(|| {
                MessageParser::new()
                    .parse_headers(raw)
                    .filter(|m| !m.parts.is_empty())
                    .map(|m| Read {
                        headers: Headers::from_message(&m),
                        ..Read::default()
                    })
            })
            .flatten()
            .unwrap_or_default();
            r.malformed = true;
            r
        }
    };

    let Read {
        headers,
        text,
        attachments,
        attachment_count,
        malformed,
    } = read_message;
    // Bytes without a single header that could be read (no sender, recipient, subject, date
    // or Message-ID) are not a message the parser understood, even when it did not complain.
    let malformed = malformed || headers.is_blank();
    let unreadable_chars = headers.has_replacements() || text.text.contains(REPLACEMENT);
    let mut notes = Vec::new();
    if truncated {
        notes.push(format!(
            "This message is {}; only its first {} were read, so the text and the list of \
             attachments may be incomplete.",
            human_size(size),
            human_size(read)
        ));
    } else if malformed {
        notes.push(
            "This message could not be read as MIME; only what could be read is shown.".to_owned(),
        );
    }
    notes.extend(headers.notes);
    if unreadable_chars {
        notes.push(format!(
            "Parts of this message are not in a character set that could be read; they are \
             shown as {REPLACEMENT}."
        ));
    }
    if attachment_count > attachments.len() {
        notes.push(format!(
            "The message lists {attachment_count} attachments; the first {} are shown.",
            attachments.len()
        ));
    }
    if text.cut {
        notes.push(format!(
            "The text of this message is longer than {}; only its first {} can be shown.",
            human_size(MAX_BODY_TEXT as u64),
            human_size(MAX_BODY_TEXT as u64)
        ));
    }

    let preview = &text.text[..text.text.floor_char_boundary(PREVIEW_BYTES)];
    let item = MailItem {
        headers: Some(headers.wire),
        text: preview.to_owned(),
        text_total: text.text.len() as u64,
        attachments,
        notes,
        size,
        ..MailItem::default()
    };
    Summary {
        item,
        message_id: headers.message_id,
    }
}

/// The message's whole body text, as [`summarize`] previews it: the plain text parts (text
/// made from HTML when that is all there is), line ends as `\n`, no trailing blanks, at most
/// [`MAX_BODY_TEXT`] bytes. Empty when nothing could be read.
pub fn body_text(raw: &[u8]) -> String {
    let (raw, _) = bounded(raw);
    guarded(|| {
        MessageParser::new()
            .parse(raw)
            .filter(|m| !m.parts.is_empty())
            .map(|m| Text::from_message(&m).text)
    })
    .flatten()
    .unwrap_or_default()
}

/// The next part of `text` from byte `offset` (moved forward to a character boundary):
/// [`PREVIEW_BYTES`] bytes, or up to [`MORE_ALL_BYTES`] when `all`, cut at a character boundary.
/// Returns the part and the length of the whole text; an offset at or past the end gives "".
pub fn more(text: &str, offset: u64, all: bool) -> (String, u64) {
    let total = text.len() as u64;
    let start = match usize::try_from(offset) {
        Ok(start) if start < text.len() => text.ceil_char_boundary(start),
        _ => return (String::new(), total),
    };
    let want = if all { MORE_ALL_BYTES } else { PREVIEW_BYTES };
    let end = text.floor_char_boundary(start.saturating_add(want));
    let part = text.get(start..end).unwrap_or_default();
    (part.to_owned(), total)
}

/// Attachment `index` as numbered by [`summarize`], decoded. `None` when there is no such
/// attachment or the message cannot be read.
pub fn attachment(raw: &[u8], index: u32) -> Option<Attachment> {
    guarded(|| {
        let message = MessageParser::new().parse(raw)?;
        let index = usize::try_from(index).ok()?;
        let part = listed(&message).nth(index)?;
        Some(to_attachment(part, index))
    })
    .flatten()
}

/// The attachments [`summarize`] lists (at most [`MAX_ATTACHMENTS`]), decoded, in order: what a
/// forward carries.
pub fn attachments(raw: &[u8]) -> Vec<Attachment> {
    guarded(|| {
        let Some(message) = MessageParser::new().parse(raw) else {
            return Vec::new();
        };
        listed(&message)
            .take(MAX_ATTACHMENTS)
            .enumerate()
            .map(|(index, part)| to_attachment(part, index))
            .collect()
    })
    .unwrap_or_default()
}

/// Runs `f`, turning a panic into `None`.
fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    catch_unwind(AssertUnwindSafe(f)).ok()
}

/// At most [`MAX_PARSE_BYTES`] of `raw`, and how many bytes that is.
fn bounded(raw: &[u8]) -> (&[u8], u64) {
    let raw = &raw[..raw.len().min(MAX_PARSE_BYTES)];
    (raw, raw.len() as u64)
}

/// What [`summarize`] read from a parsed message.
#[derive(Default)]
struct Read {
    headers: Headers,
    text: Text,
    attachments: Vec<AttachmentInfo>,
    /// How many attachments the message has (more than `attachments` holds when over the cap).
    attachment_count: usize,
    /// The parser met something it could not decode.
    malformed: bool,
}

impl Read {
    fn from_message(message: &Message<'_>) -> Read {
        let mut attachments = Vec::new();
        let mut attachment_count = 0;
        for (index, part) in listed(message).enumerate() {
            attachment_count += 1;
            if index < MAX_ATTACHMENTS {
                attachments.push(AttachmentInfo {
                    index: u32::try_from(index).unwrap_or(u32::MAX),
                    name: attachment_name(part, index),
                    content_type: content_type(part),
                    size: part.contents().len() as u64,
                });
            }
        }
        Read {
            headers: Headers::from_message(message),
            text: Text::from_message(message),
            attachments,
            attachment_count,
            malformed: message
                .parts
                .iter()
                .enumerate()
                // (a message of headers alone is one empty part with an encoding problem)
                .any(|(i, p)| {
                    (p.is_encoding_problem && !(i == 0 && p.is_empty())) || broken_multipart(p)
                }),
        }
    }
}

/// The headers the device is shown.
#[derive(Default)]
struct Headers {
    wire: MailHeaders,
    message_id: Option<String>,
    /// Sentences about address lists that were cut.
    notes: Vec<String>,
}

impl Headers {
    /// A header the device shows has bytes that were not text in its character set.
    fn has_replacements(&self) -> bool {
        let w = &self.wire;
        [&w.from, &w.reply_to, &w.subject]
            .into_iter()
            .chain(&w.to)
            .chain(&w.cc)
            .any(|h| h.contains(REPLACEMENT))
    }

    /// Nothing the device shows as a header was found.
    fn is_blank(&self) -> bool {
        let w = &self.wire;
        w.from.is_empty()
            && w.to.is_empty()
            && w.cc.is_empty()
            && w.reply_to.is_empty()
            && w.subject.is_empty()
            && w.date_ms == 0
            && self.message_id.is_none()
    }

    /// `message.parts` must not be empty (the parser's accessors index it).
    fn from_message(message: &Message<'_>) -> Headers {
        let mut notes = Vec::new();
        let from = message
            .from()
            .and_then(|a| a.iter().find_map(show_addr))
            .unwrap_or_default();
        let reply_to = message
            .reply_to()
            .and_then(|a| a.iter().find_map(show_addr))
            .unwrap_or_default();
        let to = address_list(message.all_to().flat_map(|a| a.iter()), "To", &mut notes);
        let cc = address_list(message.all_cc().flat_map(|a| a.iter()), "Cc", &mut notes);
        let subject = message
            .subject()
            .map(|s| one_line(s, MAX_SUBJECT))
            .unwrap_or_default();
        let date_ms = message
            .date()
            .filter(|d| d.is_valid())
            .map_or(0, |d| d.to_timestamp().saturating_mul(1000));
        let message_id = message
            .message_id()
            .map(str::trim)
            .filter(|id| !id.is_empty() && id.len() <= MAX_MESSAGE_ID)
            .filter(|id| !id.chars().any(|c| c.is_control() || c.is_whitespace()))
            .map(str::to_owned);
        let wire = MailHeaders {
            from,
            to,
            cc,
            subject,
            date_ms,
            message_id: message_id.clone().unwrap_or_default(),
            importance: importance(message) as i32,
            reply_to,
        };
        Headers {
            wire,
            message_id,
            notes,
        }
    }
}

/// Up to [`MAX_ADDRESSES`] addresses as shown; a note when there were more.
fn address_list<'a, 'x: 'a>(
    addrs: impl Iterator<Item = &'a Addr<'x>>,
    field: &str,
    notes: &mut Vec<String>,
) -> Vec<String> {
    let mut shown = Vec::new();
    let mut count = 0usize;
    for addr in addrs {
        let Some(addr) = show_addr(addr) else {
            continue;
        };
        count += 1;
        if shown.len() < MAX_ADDRESSES {
            shown.push(addr);
        }
    }
    if count > shown.len() {
        notes.push(format!(
            "The {field} field lists {count} addresses; the first {} are shown.",
            shown.len()
        ));
    }
    shown
}

/// `Name <address>`, the bare address, or the bare name; at most [`MAX_ADDRESS`] bytes (the
/// name is shortened first).
fn show_addr(addr: &Addr<'_>) -> Option<String> {
    let address = addr
        .address
        .as_deref()
        .map(|a| one_line(a, MAX_ADDRESS))
        .filter(|a| !a.is_empty());
    let name = addr
        .name
        .as_deref()
        .map(|n| one_line(n, MAX_ADDRESS))
        .filter(|n| !n.is_empty());
    match (name, address) {
        (Some(name), Some(address)) => {
            // " <" + ">"
            let room = MAX_ADDRESS.saturating_sub(address.len() + 3);
            let name = name[..name.floor_char_boundary(room)].trim_end();
            if name.is_empty() || name == address {
                Some(address)
            } else {
                Some(format!("{name} <{address}>"))
            }
        }
        (None, Some(address)) => Some(address),
        (Some(name), None) => Some(name),
        (None, None) => None,
    }
}

/// Importance from `Importance:`, else `X-Priority:`, else `Priority:`.
fn importance(message: &Message<'_>) -> Importance {
    for header in ["Importance", "X-Priority", "Priority"] {
        let Some(value) = header_text(message, header) else {
            continue;
        };
        let value = value.trim().to_ascii_lowercase();
        let found = match value.as_bytes().first() {
            Some(b'1' | b'2') => Some(Importance::High),
            Some(b'3') => Some(Importance::Normal),
            Some(b'4' | b'5') => Some(Importance::Low),
            _ if value.starts_with("high") || value.starts_with("urgent") => Some(Importance::High),
            _ if value.starts_with("low") || value.starts_with("non-urgent") => {
                Some(Importance::Low)
            }
            _ if value.starts_with("normal") => Some(Importance::Normal),
            _ => None,
        };
        if let Some(found) = found {
            return found;
        }
    }
    Importance::Normal
}

/// A header's value as text (the first of several), however the parser stored it.
fn header_text<'m>(message: &'m Message<'_>, name: &'m str) -> Option<Cow<'m, str>> {
    let name = HeaderName::parse(name)?;
    let header = message
        .parts
        .first()?
        .headers
        .iter()
        .find(|h| h.name == name)?;
    match &header.value {
        HeaderValue::Text(t) => Some(Cow::Borrowed(t.as_ref())),
        HeaderValue::TextList(l) => l.first().map(|t| Cow::Borrowed(t.as_ref())),
        _ => {
            let start = usize::try_from(header.offset_start).ok()?;
            let end = usize::try_from(header.offset_end).ok()?;
            let bytes = message.raw_message.get(start..end)?;
            Some(String::from_utf8_lossy(bytes))
        }
    }
}

/// The body text of a message, normalised and bounded.
#[derive(Default)]
struct Text {
    text: String,
    /// Longer than [`MAX_BODY_TEXT`]: cut, with a sentence at the end.
    cut: bool,
}

impl Text {
    fn from_message(message: &Message<'_>) -> Text {
        let mut joined = String::new();
        for pos in 0..message.text_body.len() {
            let Some(part) = message.body_text(pos) else {
                continue;
            };
            let part = normalise(&part);
            if part.is_empty() {
                continue;
            }
            if !joined.is_empty() {
                joined.push_str("\n\n");
            }
            joined.push_str(&part);
            if joined.len() > MAX_BODY_TEXT {
                break;
            }
        }
        if joined.len() <= MAX_BODY_TEXT {
            return Text {
                text: joined,
                cut: false,
            };
        }
        let marker = format!(
            "\n\n[The rest of this text is not shown: it is longer than {}.]",
            human_size(MAX_BODY_TEXT as u64)
        );
        let keep = joined.floor_char_boundary(MAX_BODY_TEXT - marker.len());
        joined.truncate(keep);
        joined.push_str(&marker);
        Text {
            text: joined,
            cut: true,
        }
    }
}

/// Line ends as `\n`, no control characters but `\n` and `\t`, no trailing blanks.
fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push('\n');
                }
            }
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.truncate(out.trim_end().len());
    out
}

/// The message's attachments, in message order: the numbering every function here shares.
/// Attached messages are one attachment each; their own parts are not listed.
fn listed<'a, 'x>(message: &'a Message<'x>) -> impl Iterator<Item = &'a MessagePart<'x>> {
    message
        .attachments
        .iter()
        .filter_map(|&id| message.parts.get(usize::try_from(id).ok()?))
        .filter(|part| !matches!(part.body, PartType::Multipart(_)))
}

fn to_attachment(part: &MessagePart<'_>, index: usize) -> Attachment {
    Attachment {
        name: attachment_name(part, index),
        content_type: content_type(part),
        data: part.contents().to_vec(),
    }
}

/// The attachment's file name, made safe to show and save: "attachment-N" (from 1) when it has
/// none, `<subject>.eml` for an attached message.
fn attachment_name(part: &MessagePart<'_>, index: usize) -> String {
    let fallback = || format!("attachment-{}", index + 1);
    if let Some(name) = part.attachment_name().and_then(file_name) {
        return name;
    }
    let is_message =
        matches!(part.body, PartType::Message(_)) || content_type(part) == "message/rfc822";
    if !is_message {
        return fallback();
    }
    let subject = match &part.body {
        PartType::Message(m) if !m.parts.is_empty() => m.subject(),
        _ => None,
    };
    let stem = subject
        .and_then(|s| file_name(&s[..s.floor_char_boundary(MAX_ATTACHMENT_NAME - 4)]))
        .unwrap_or_else(fallback);
    format!("{stem}.eml")
}

/// `name` without control characters, path separators or characters file systems refuse;
/// at most [`MAX_ATTACHMENT_NAME`] bytes, keeping a short extension. `None` when nothing is
/// left.
fn file_name(name: &str) -> Option<String> {
    let cleaned: String = name
        .chars()
        .map(|c| match c {
            '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' => '_',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.chars().all(|c| c == '.' || c == '_' || c == ' ') {
        return None;
    }
    if cleaned.len() <= MAX_ATTACHMENT_NAME {
        return Some(cleaned.to_owned());
    }
    let ext = cleaned
        .rfind('.')
        .map(|dot| &cleaned[dot..])
        .filter(|ext| ext.len() <= 16)
        .unwrap_or("");
    let stem = &cleaned[..cleaned.floor_char_boundary(MAX_ATTACHMENT_NAME - ext.len())];
    Some(format!("{}{ext}", stem.trim_end()))
}

/// A part declared `multipart/*` whose boundary was never found: the parser kept its body as
/// text.
fn broken_multipart(part: &MessagePart<'_>) -> bool {
    !matches!(part.body, PartType::Multipart(_))
        && part
            .content_type()
            .is_some_and(|ct| ct.ctype().trim().eq_ignore_ascii_case("multipart"))
}

/// "type/subtype", lower case, from the part's Content-Type, or what its body says it is (a
/// broken multipart is its undecoded text).
fn content_type(part: &MessagePart<'_>) -> String {
    let declared = part
        .content_type()
        .filter(|_| !broken_multipart(part))
        .and_then(|ct| {
            let subtype = ct.subtype()?;
            let joined = format!("{}/{}", ct.ctype().trim(), subtype.trim()).to_ascii_lowercase();
            let token = |s: &str| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
            };
            let (t, s) = joined.split_once('/')?;
            (token(t) && token(s) && joined.len() <= MAX_CONTENT_TYPE).then_some(joined)
        });
    if let Some(declared) = declared {
        return declared;
    }
    match part.body {
        PartType::Text(_) => "text/plain",
        PartType::Html(_) => "text/html",
        PartType::Message(_) => "message/rfc822",
        PartType::Binary(_) | PartType::InlineBinary(_) | PartType::Multipart(_) => {
            "application/octet-stream"
        }
    }
    .to_owned()
}

/// One line of at most `max` bytes: control characters (folding, tabs) become spaces.
fn one_line(text: &str, max: usize) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let line = line.trim();
    line[..line.floor_char_boundary(max)].trim_end().to_owned()
}

/// "512 bytes", "12.3 KiB", "25.0 MiB", "1.2 GiB".
fn human_size(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let b = bytes as f64;
    if bytes < 1024 {
        format!("{bytes} bytes")
    } else if b < KIB * KIB {
        format!("{:.1} KiB", b / KIB)
    } else if b < KIB * KIB * KIB {
        format!("{:.1} MiB", b / (KIB * KIB))
    } else {
        format!("{:.1} GiB", b / (KIB * KIB * KIB))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn b64(data: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for (n, chunk) in data.chunks(3).enumerate() {
            if n > 0 && n % 19 == 0 {
                out.push_str("\r\n");
            }
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(A[(v >> (18 - 6 * i)) as usize & 63] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    fn headers(s: &Summary) -> &MailHeaders {
        s.item.headers.as_ref().expect("headers")
    }

    fn whole(raw: &[u8]) -> Summary {
        summarize(raw, raw.len() as u64)
    }

    const PLAIN: &[u8] = b"From: \"Alice Example\" <alice@example.test>\r\n\
        To: Bob <bob@example.test>, carol@example.test\r\n\
        Cc: Dave <dave@example.test>\r\n\
        Reply-To: replies@example.test\r\n\
        Subject: Quarterly\r\n =?utf-8?q?n=C3=BAmbers?=\r\n\
        Date: Mon, 3 Mar 2025 11:15:00 +0100\r\n\
        Message-ID: <q1@example.test>\r\n\
        \r\n\
        Hello Bob,\r\n\r\nthe numbers are in.   \r\n\r\n\r\n";

    #[test]
    fn plain_mail() {
        let s = whole(PLAIN);
        let h = headers(&s);
        assert_eq!(h.from, "Alice Example <alice@example.test>");
        assert_eq!(h.to, ["Bob <bob@example.test>", "carol@example.test"]);
        assert_eq!(h.cc, ["Dave <dave@example.test>"]);
        assert_eq!(h.reply_to, "replies@example.test");
        assert_eq!(h.subject, "Quarterly númbers");
        assert_eq!(h.date_ms, 1_740_996_900_000);
        assert_eq!(h.message_id, "q1@example.test");
        assert_eq!(h.importance, Importance::Normal as i32);
        assert_eq!(s.message_id.as_deref(), Some("q1@example.test"));
        assert_eq!(s.item.text, "Hello Bob,\n\nthe numbers are in.");
        assert_eq!(s.item.text_total, s.item.text.len() as u64);
        assert_eq!(body_text(PLAIN), s.item.text);
        assert!(s.item.attachments.is_empty());
        assert!(s.item.notes.is_empty(), "{:?}", s.item.notes);
        assert_eq!(s.item.size, PLAIN.len() as u64);
        assert_eq!(s.item.ref_id, 0);
        assert!(s.item.flags.is_none());
    }

    #[test]
    fn a_message_without_a_body_has_no_note() {
        for raw in [
            &b"From: a@example.test\r\nSubject: only a subject\r\n\r\n"[..],
            b"From: a@example.test\r\nSubject: only a subject\r\n",
            b"From: a@example.test\nSubject: only a subject\n\n",
        ] {
            let s = whole(raw);
            assert_eq!(headers(&s).subject, "only a subject");
            assert_eq!(s.item.text, "");
            assert!(s.item.notes.is_empty(), "{raw:?}: {:?}", s.item.notes);
        }
    }

    #[test]
    fn html_only_mail_is_shown_as_text() {
        let raw = b"From: a@example.test\r\nSubject: html\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
            <html><head><style>p {color: red}</style></head><body><p>Hello <b>world</b></p>\
            <p>Second&nbsp;line &amp; more</p></body></html>\r\n";
        let s = whole(raw);
        let text = &s.item.text;
        assert!(text.contains("Hello world"), "{text:?}");
        assert!(text.contains("Second"), "{text:?}");
        assert!(!text.contains('<'), "{text:?}");
        assert!(s.item.attachments.is_empty());
        assert_eq!(body_text(raw), *text);
    }

    #[test]
    fn multipart_alternative_prefers_plain_text() {
        let raw = b"From: a@example.test\r\nSubject: alt\r\nMIME-Version: 1.0\r\n\
            Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n\
            --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nthe plain version\r\n\
            --b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>the <i>html</i> version</p>\r\n\
            --b1--\r\n";
        let s = whole(raw);
        assert_eq!(s.item.text, "the plain version");
        assert!(s.item.attachments.is_empty());
        assert!(s.item.notes.is_empty(), "{:?}", s.item.notes);
    }

    fn with_attachments(n: usize) -> Vec<u8> {
        let mut raw = String::from(
            "From: a@example.test\r\nSubject: many\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n\
             --m\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n",
        );
        for i in 0..n {
            raw.push_str(&format!(
                "--m\r\nContent-Type: application/octet-stream; name=\"f{i}.bin\"\r\n\
                 Content-Disposition: attachment; filename=\"f{i}.bin\"\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
                b64(format!("file {i}").as_bytes())
            ));
        }
        raw.push_str("--m--\r\n");
        raw.into_bytes()
    }

    #[test]
    fn at_most_100_attachments_are_listed() {
        let raw = with_attachments(200);
        let s = whole(&raw);
        assert_eq!(s.item.attachments.len(), MAX_ATTACHMENTS);
        for (i, a) in s.item.attachments.iter().enumerate() {
            assert_eq!(a.index as usize, i);
            assert_eq!(a.name, format!("f{i}.bin"));
            assert_eq!(a.content_type, "application/octet-stream");
            assert_eq!(a.size, format!("file {i}").len() as u64);
        }
        assert_eq!(
            s.item.notes,
            ["The message lists 200 attachments; the first 100 are shown."]
        );
        assert_eq!(s.item.text, "see attached");
        // numbering goes on past the listed ones
        let a = attachment(&raw, 150).expect("attachment 150");
        assert_eq!(a.name, "f150.bin");
        assert_eq!(a.data, b"file 150");
        assert!(attachment(&raw, 200).is_none());
        assert_eq!(attachments(&raw).len(), MAX_ATTACHMENTS);
    }

    #[test]
    fn a_prefix_of_a_large_message_is_summarized_with_a_note() {
        const MIB: usize = 1024 * 1024;
        let mut raw = String::from(
            "From: Big Sender <big@example.test>\r\nTo: bob@example.test\r\nSubject: the video\r\n\
             Message-ID: <big1@example.test>\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"big\"\r\n\r\n\
             --big\r\nContent-Type: text/plain\r\n\r\nhere it is\r\n\
             --big\r\nContent-Type: video/mp4; name=\"v.mp4\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n",
        )
        .into_bytes();
        let line =
            b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n";
        while raw.len() < 25 * MIB - 100 {
            raw.extend_from_slice(line);
        }
        raw.extend_from_slice(b"--big--\r\n");
        let prefix = &raw[..4 * MIB];
        let s = summarize(prefix, raw.len() as u64);
        let h = headers(&s);
        assert_eq!(h.from, "Big Sender <big@example.test>");
        assert_eq!(h.subject, "the video");
        assert_eq!(s.message_id.as_deref(), Some("big1@example.test"));
        assert_eq!(s.item.text, "here it is");
        assert_eq!(s.item.size, raw.len() as u64);
        assert_eq!(
            s.item.notes,
            [
                "This message is 25.0 MiB; only its first 4.0 MiB were read, so the text and the \
              list of attachments may be incomplete."
            ]
        );
    }

    #[test]
    fn malformed_mime_keeps_the_headers() {
        let samples: [&[u8]; 4] = [
            // the parts use another boundary than the one declared, and it never ends
            b"From: a@example.test\r\nSubject: broken\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n\
              --YY\r\nContent-Type: text/plain\r\n\r\nhello\r\n--YY\r\n",
            // bad base64 in an attachment, no closing boundary
            b"From: a@example.test\r\nSubject: broken\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
              --b\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
              --b\r\nContent-Type: image/png; name=\"x.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
              !!!!@@@@****\r\n",
            // an attached message that is not one
            b"From: a@example.test\r\nSubject: broken\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
              --b\r\nContent-Type: message/rfc822\r\n\r\n\r\n--b--\r\n",
            // nested multiparts with the same boundary
            b"From: a@example.test\r\nSubject: broken\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
              --b\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n--b\r\n\r\n",
        ];
        for raw in samples {
            let s = whole(raw);
            let h = headers(&s);
            assert_eq!(h.subject, "broken", "{:?}", String::from_utf8_lossy(raw));
            assert_eq!(h.from, "a@example.test");
            let _ = body_text(raw);
            for i in 0..3 {
                let _ = attachment(raw, i);
            }
        }
        // what could not be decoded is said so
        for raw in [samples[0], samples[1], samples[3]] {
            let s = whole(raw);
            assert!(
                s.item
                    .notes
                    .iter()
                    .any(|n| n.contains("could not be read as MIME")),
                "{:?}",
                s.item
            );
        }
        // a multipart whose boundary never comes is its text
        let s = whole(samples[0]);
        assert_eq!(s.item.attachments.len(), 1);
        assert_eq!(s.item.attachments[0].content_type, "text/plain");
        let a = attachment(samples[0], 0).expect("attachment 0");
        assert!(a.data.starts_with(b"--YY"));
    }

    #[test]
    fn unreadable_input_gives_an_empty_summary_with_a_note() {
        let noise: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 256) as u8).collect();
        for raw in [&b""[..], b"\r\n\r\n", b"\0\0\0", &noise, b"just text\r\n"] {
            let s = summarize(raw, raw.len() as u64);
            // no header could be read: said so
            assert_eq!(
                s.item.notes,
                ["This message could not be read as MIME; only what could be read is shown."],
                "{raw:?}"
            );
            let _ = body_text(raw);
            let _ = attachment(raw, 0);
        }
        let s = summarize(b"", 0);
        assert_eq!(s.item.headers, Some(MailHeaders::default()));
        assert_eq!(
            s.item.notes,
            ["This message could not be read as MIME; only what could be read is shown."]
        );
    }

    #[test]
    fn a_panic_in_the_parser_is_caught() {
        // Found by the `mail_content` fuzz target: trips a `debug_assert!` in mail-parser 0.11
        // ("Invalid part ID, could not find multipart."), so in debug builds the parser panics.
        let raw: &[u8] = b"From: \x00\x00\x00\x1aample.tes\x7f\x00\x00\x00ubjmct: alt\rsion: 1.0\r\n\
            Content-Type: multipart/mixed; boundary=\"o\"\r\n\r\n,--o\r\n\
            Content-Type: message/rfc822\r\n\x96\nSubjese64\r\n\r\nJVBERgD/gAo=\r\xf6\xd2\xd2\x87\r\n\
            Content-Type: message/rfc822\r\n\r\nS\xadin\r\n\r\nx\r\n--n--\r\n--o--\r\n";
        let s = whole(raw);
        assert!(s.item.headers.is_some());
        let _ = body_text(raw);
        let _ = attachments(raw);
        for i in 0..3 {
            let _ = attachment(raw, i);
        }
        if cfg!(debug_assertions) {
            assert_eq!(
                s.item.notes,
                ["This message could not be read as MIME; only what could be read is shown."]
            );
        }
    }

    #[test]
    fn eight_bit_headers_and_body_do_not_panic() {
        // latin-1 bytes without any declared charset
        let raw = b"From: Ren\xe9 <rene@example.test>\r\nSubject: Caf\xe9 cr\xe8me\r\n\r\nVoil\xe0 le caf\xe9\r\n";
        let s = whole(raw);
        let h = headers(&s);
        assert!(h.subject.starts_with("Caf"), "{:?}", h.subject);
        assert!(h.from.contains("rene@example.test"), "{:?}", h.from);
        assert!(s.item.text.starts_with("Voil"), "{:?}", s.item.text);
        assert_eq!(
            s.item.notes,
            [
                "Parts of this message are not in a character set that could be read; they are \
              shown as \u{FFFD}."
            ]
        );
        // and with the charset declared, it reads right
        let raw = b"From: rene@example.test\r\nSubject: =?iso-8859-1?q?Caf=E9?=\r\n\
            Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
            Voil\xe0 le caf\xe9\r\n";
        let s = whole(raw);
        assert_eq!(headers(&s).subject, "Café");
        assert_eq!(s.item.text, "Voilà le café");
        assert!(s.item.notes.is_empty(), "{:?}", s.item.notes);
    }

    #[test]
    fn truncated_at_every_length_does_not_panic() {
        let raw = format!(
            "From: A <a@example.test>\r\nTo: b@example.test\r\nSubject: cut\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"o\"\r\n\r\n\
             --o\r\nContent-Type: multipart/alternative; boundary=\"i\"\r\n\r\n\
             --i\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
             caf=C3=A9 cr=C3=A8me\r\n\
             --i\r\nContent-Type: text/html\r\n\r\n<p>caf&eacute;</p>\r\n--i--\r\n\
             --o\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n\
             --o\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner text\r\n\
             --o--\r\n",
            b64(b"%PDF-1.4 not really")
        );
        let raw = raw.as_bytes();
        let s = whole(raw);
        assert_eq!(s.item.text, "café crème");
        assert_eq!(s.item.attachments.len(), 2);
        for n in 0..=raw.len() {
            let cut = &raw[..n];
            let s = summarize(cut, raw.len() as u64);
            assert_eq!(s.item.text_total, body_text(cut).len() as u64, "at {n}");
            for i in 0..3 {
                let _ = attachment(cut, i);
            }
            let _ = attachments(cut);
        }
    }

    #[test]
    fn more_cuts_at_character_boundaries() {
        // 2-, 3- and 4-byte characters
        for c in ['é', '€', '𝄞'] {
            let text: String = std::iter::repeat_n(c, 5000).collect();
            let total = text.len() as u64;
            let mut offset = 0u64;
            let mut again = String::new();
            loop {
                let (part, t) = more(&text, offset, false);
                assert_eq!(t, total);
                if part.is_empty() {
                    break;
                }
                assert!(part.len() <= PREVIEW_BYTES);
                let last = offset + part.len() as u64 == total;
                assert!(last || part.len() > PREVIEW_BYTES - c.len_utf8());
                offset += part.len() as u64;
                again.push_str(&part);
            }
            assert_eq!(again, text);
            // an offset inside a character moves forward to the next one
            let (part, _) = more(&text, 1, false);
            assert!(text[c.len_utf8()..].starts_with(&part));
            // all: up to MORE_ALL_BYTES
            let (part, _) = more(&text, 0, true);
            assert_eq!(part, text[..text.floor_char_boundary(MORE_ALL_BYTES)]);
        }
        assert_eq!(more("abc", 3, false), (String::new(), 3));
        assert_eq!(more("abc", u64::MAX, true), (String::new(), 3));
        assert_eq!(more("", 0, false), (String::new(), 0));
        let big = "x".repeat(MORE_ALL_BYTES + 10);
        assert_eq!(more(&big, 5, true).0.len(), MORE_ALL_BYTES);
    }

    #[test]
    fn the_preview_is_a_prefix_of_the_body_text() {
        let body: String = std::iter::repeat_n("naïve café € ", 400).collect();
        let raw = format!(
            "From: a@example.test\r\nSubject: long\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
        );
        let s = whole(raw.as_bytes());
        let text = body_text(raw.as_bytes());
        assert!(s.item.text.len() <= PREVIEW_BYTES && s.item.text.len() > PREVIEW_BYTES - 4);
        assert!(text.starts_with(&s.item.text));
        assert_eq!(s.item.text_total, text.len() as u64);
        assert_eq!(text, body.trim_end());
        let (rest, _) = more(&text, s.item.text.len() as u64, true);
        assert_eq!(format!("{}{rest}", s.item.text), text);
    }

    #[test]
    fn very_long_text_is_cut_with_a_sentence() {
        let body = "0123456789abcdef\n".repeat(MAX_BODY_TEXT / 16);
        let raw = format!("From: a@example.test\r\nSubject: long\r\n\r\n{body}");
        let text = body_text(raw.as_bytes());
        assert!(text.len() <= MAX_BODY_TEXT);
        assert!(text.ends_with("[The rest of this text is not shown: it is longer than 1.0 MiB.]"));
        let s = whole(raw.as_bytes());
        assert_eq!(s.item.text_total, text.len() as u64);
        assert!(
            s.item
                .notes
                .iter()
                .any(|n| n.contains("longer than 1.0 MiB"))
        );
    }

    #[test]
    fn attachments_are_decoded() {
        let data: Vec<u8> = (0..=255u8).collect();
        let raw = format!(
            "From: a@example.test\r\nSubject: files\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"z\"\r\n\r\n\
             --z\r\nContent-Type: text/plain\r\n\r\nbody\r\n\
             --z\r\nContent-Type: Application/Octet-Stream\r\n\
             Content-Disposition: attachment; filename=\"../../etc/pass\\\"wd\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}\r\n\
             --z\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n\
             --z\r\nContent-Type: message/rfc822\r\n\r\n\
             From: c@example.test\r\nSubject: Lunch plans?\r\n\r\nnoon\r\n\
             --z--\r\n",
            b64(&data),
            b64(b"\x89PNG")
        );
        let raw = raw.as_bytes();
        let s = whole(raw);
        let list: Vec<(&str, &str, u64)> = s
            .item
            .attachments
            .iter()
            .map(|a| (a.name.as_str(), a.content_type.as_str(), a.size))
            .collect();
        let a0 = attachment(raw, 0).expect("attachment 0");
        assert_eq!(a0.data, data);
        assert_eq!(a0.content_type, "application/octet-stream");
        assert_eq!(a0.name, ".._.._etc_pass_wd");
        let a1 = attachment(raw, 1).expect("attachment 1");
        assert_eq!(a1.data, b"\x89PNG");
        assert_eq!(a1.name, "attachment-2");
        let a2 = attachment(raw, 2).expect("attachment 2");
        assert_eq!(a2.name, "Lunch plans_.eml");
        assert_eq!(a2.content_type, "message/rfc822");
        assert!(
            a2.data
                .starts_with(b"From: c@example.test\r\nSubject: Lunch plans?")
        );
        assert!(
            a2.data.ends_with(b"noon"),
            "{:?}",
            String::from_utf8_lossy(&a2.data)
        );
        assert_eq!(
            list,
            [
                (a0.name.as_str(), "application/octet-stream", 256),
                ("attachment-2", "image/png", 4),
                ("Lunch plans_.eml", "message/rfc822", a2.data.len() as u64),
            ]
        );
        assert!(attachment(raw, 3).is_none());
        assert_eq!(attachments(raw), [a0, a1, a2]);
        // the attached message's own text is not the body
        assert_eq!(s.item.text, "body");
    }

    #[test]
    fn importance_comes_from_the_priority_headers() {
        let cases: [(&str, Importance); 7] = [
            ("X-Priority: 1 (Highest)\r\n", Importance::High),
            ("X-Priority: 5\r\n", Importance::Low),
            ("Importance: high\r\n", Importance::High),
            ("Importance: Low\r\nX-Priority: 1\r\n", Importance::Low),
            ("Priority: urgent\r\n", Importance::High),
            ("Priority: non-urgent\r\n", Importance::Low),
            ("", Importance::Normal),
        ];
        for (header, want) in cases {
            let raw = format!("From: a@example.test\r\n{header}Subject: x\r\n\r\nhi\r\n");
            let s = whole(raw.as_bytes());
            assert_eq!(headers(&s).importance, want as i32, "{header:?}");
        }
    }

    #[test]
    fn header_fields_are_bounded() {
        let many: Vec<String> = (0..150).map(|i| format!("u{i}@example.test")).collect();
        let long_name = "N".repeat(1000);
        let raw = format!(
            "From: \"{long_name}\" <a@example.test>\r\nTo: {}\r\nSubject: {}\r\nMessage-ID: <{}@x>\r\n\r\nhi\r\n",
            many.join(", "),
            "s".repeat(5000),
            "i".repeat(2000),
        );
        let s = whole(raw.as_bytes());
        let h = headers(&s);
        assert_eq!(h.to.len(), MAX_ADDRESSES);
        assert_eq!(h.to[99], "u99@example.test");
        assert!(h.from.len() <= MAX_ADDRESS && h.from.ends_with(" <a@example.test>"));
        assert_eq!(h.subject.len(), MAX_SUBJECT);
        assert_eq!(h.message_id, "");
        assert_eq!(s.message_id, None);
        assert_eq!(
            s.item.notes,
            ["The To field lists 150 addresses; the first 100 are shown."]
        );
    }

    #[test]
    fn long_attachment_names_keep_their_extension() {
        let name = format!("{}.pdf", "é".repeat(300));
        let cut = file_name(&name).expect("a name");
        assert!(cut.len() <= MAX_ATTACHMENT_NAME);
        assert!(cut.ends_with("é.pdf"));
        assert_eq!(file_name(" .. "), None);
        assert_eq!(file_name("a\r\nb.txt").as_deref(), Some("a  b.txt"));
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(512), "512 bytes");
        assert_eq!(human_size(4 * 1024 * 1024), "4.0 MiB");
        assert_eq!(human_size(12_595), "12.3 KiB");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
    }
}
