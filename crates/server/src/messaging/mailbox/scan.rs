//! One message, as bytes, in; a verdict out: is it an activation request, and what does it
//! carry. No I/O. The bytes are hostile: sizes are bounded and a panic in the parser is caught.

use mail_parser::{MessageParser, MimeHeaders, PartType};

use super::ETP_DAT;

/// The bounds every message is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Larger messages are not parsed.
    pub max_message_bytes: u64,
    /// Larger `ETP.DAT`s are not handed over.
    pub max_etp_dat_bytes: usize,
}

/// What a message is, for the watchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No attachment named `ETP.DAT`: leave the message where it is.
    Ordinary,
    /// Over [`Limits::max_message_bytes`]: not parsed, left where it is.
    TooLarge {
        /// Its size.
        size: u64,
    },
    /// Not a message at all (or the parser gave up): left where it is.
    Unparseable,
    /// An activation request: hand it over, then remove it.
    Activation {
        /// The first `ETP.DAT`, decoded.
        etp_dat: Vec<u8>,
        /// `Message-ID`, without brackets.
        message_id: Option<String>,
        /// The first `From` address.
        from: Option<String>,
        /// How many attachments were named `ETP.DAT` (only the first is used).
        count: usize,
    },
    /// Its `ETP.DAT` is over [`Limits::max_etp_dat_bytes`]: remove the message, hand nothing
    /// over.
    OversizedEtpDat {
        /// The `ETP.DAT`'s decoded size.
        size: usize,
        /// `Message-ID`, without brackets.
        message_id: Option<String>,
        /// The first `From` address.
        from: Option<String>,
    },
}

/// Looks for an attachment named `ETP.DAT` (case-insensitive, surrounding blanks ignored) among
/// the message's own parts — not inside attached messages.
pub(crate) fn inspect(raw: &[u8], limits: &Limits) -> Verdict {
    let size = raw.len() as u64;
    if size > limits.max_message_bytes {
        return Verdict::TooLarge { size };
    }
    std::panic::catch_unwind(|| inspect_unguarded(raw, limits)).unwrap_or(Verdict::Unparseable)
}

fn inspect_unguarded(raw: &[u8], limits: &Limits) -> Verdict {
    let Some(message) = MessageParser::new().parse(raw) else {
        return Verdict::Unparseable;
    };
    let mut named = message.parts.iter().filter(|part| {
        !matches!(part.body, PartType::Multipart(_) | PartType::Message(_))
            && part
                .attachment_name()
                .is_some_and(|n| n.trim().eq_ignore_ascii_case(ETP_DAT))
    });
    let Some(first) = named.next() else {
        return Verdict::Ordinary;
    };
    let count = 1 + named.count();
    let message_id = message
        .parts
        .first()
        .and_then(|_| message.message_id())
        .map(str::to_owned);
    let from = message
        .parts
        .first()
        .and_then(|_| message.from())
        .and_then(|a| a.first())
        .and_then(|a| a.address.as_deref())
        .map(str::to_owned);
    let contents = first.contents();
    if contents.len() > limits.max_etp_dat_bytes {
        return Verdict::OversizedEtpDat {
            size: contents.len(),
            message_id,
            from,
        };
    }
    Verdict::Activation {
        etp_dat: contents.to_vec(),
        message_id,
        from,
        count,
    }
}

/// A quick look at a server's `BODYSTRUCTURE`: could the message carry an `ETP.DAT`? `false`
/// only when no part of the message's own could be named so; an encoded name (RFC 2047 or
/// RFC 2231) counts as "could", so the message is downloaded and [`inspect`]ed.
pub(crate) fn structure_may_hold_etp_dat(bs: &async_imap::imap_proto::BodyStructure<'_>) -> bool {
    use async_imap::imap_proto::{BodyContentCommon, BodyStructure};
    fn named(common: &BodyContentCommon<'_>) -> bool {
        let params = common.ty.params.iter().flatten().chain(
            common
                .disposition
                .iter()
                .flat_map(|d| d.params.iter().flatten()),
        );
        for (key, value) in params {
            let encoded = key.ends_with('*') || value.contains("=?");
            if encoded || value.trim().eq_ignore_ascii_case(ETP_DAT) {
                return true;
            }
        }
        false
    }
    match bs {
        BodyStructure::Basic { common, .. } | BodyStructure::Text { common, .. } => named(common),
        // an attached message is not the activation request's own part
        BodyStructure::Message { .. } => false,
        BodyStructure::Multipart { bodies, .. } => bodies.iter().any(structure_may_hold_etp_dat),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_message_bytes: 1024 * 1024,
        max_etp_dat_bytes: 16 * 1024,
    };

    fn b64(data: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    fn activation(name: &str, data: &[u8]) -> Vec<u8> {
        format!(
            "From: Relay <relay@bramble.test>\r\nTo: bob@example.test\r\nMessage-ID: <a1@relay>\r\n\
             Subject: activation\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\n\
             Content-Type: text/plain\r\n\r\nhello\r\n--XX\r\n\
             Content-Type: application/octet-stream; name=\"{name}\"\r\n\
             Content-Disposition: attachment; filename=\"{name}\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--XX--\r\n",
            b64(data)
        )
        .into_bytes()
    }

    #[test]
    fn finds_etp_dat_in_any_case() {
        let data: Vec<u8> = (0..=255u8).collect();
        for name in ["ETP.DAT", "etp.dat", "Etp.Dat"] {
            match inspect(&activation(name, &data), &LIMITS) {
                Verdict::Activation {
                    etp_dat,
                    message_id,
                    from,
                    count,
                } => {
                    assert_eq!(etp_dat, data);
                    assert_eq!(message_id.as_deref(), Some("a1@relay"));
                    assert_eq!(from.as_deref(), Some("relay@bramble.test"));
                    assert_eq!(count, 1);
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn other_attachments_are_ordinary() {
        let v = inspect(&activation("ETP.DAT.txt", b"x"), &LIMITS);
        assert_eq!(v, Verdict::Ordinary);
        assert_eq!(
            inspect(b"Subject: hi\r\n\r\nno attachment\r\n", &LIMITS),
            Verdict::Ordinary
        );
    }

    #[test]
    fn bounds_hold() {
        let big = vec![7u8; LIMITS.max_etp_dat_bytes + 1];
        assert!(matches!(
            inspect(&activation("ETP.DAT", &big), &LIMITS),
            Verdict::OversizedEtpDat { size, .. } if size == big.len()
        ));
        let small = Limits {
            max_message_bytes: 100,
            ..LIMITS
        };
        assert!(matches!(
            inspect(&activation("ETP.DAT", b"x"), &small),
            Verdict::TooLarge { .. }
        ));
    }

    #[test]
    fn hostile_bytes_do_not_panic() {
        let samples: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"\r\n\r\n".to_vec(),
            b"Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n--\r\n".to_vec(),
            b"Subject: \xff\xfe\x80\r\nContent-Type: multipart/mixed; boundary=\"a\"\r\n\r\n--a\r\nContent-Disposition: attachment; filename=\"ETP.DAT\"\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!\r\n".to_vec(),
            (0..4096u32).map(|i| (i * 7 % 256) as u8).collect(),
            "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
                .bytes()
                .chain("--b\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n".repeat(500).bytes())
                .collect(),
        ];
        for s in &samples {
            let _ = inspect(s, &LIMITS);
        }
        // truncated at every length
        let good = activation("ETP.DAT", b"0123456789");
        for n in 0..good.len() {
            let _ = inspect(&good[..n], &LIMITS);
        }
    }
}
