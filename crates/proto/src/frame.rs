//! Frames: a 4-byte length prefix, a 20-byte routing header, and a body.
//!
//! ```text
//! offset size field
//!      0    4 length   u32 big-endian: bytes that follow (header + body), 20..=MAX_FRAME_LEN
//!      4    1 version  1
//!      5    1 kind     1 = CONTROL (body: protobuf `Control`), 2 = SEALED (body: sealed `Envelope`)
//!      6    5 source   address: tag u8 (0 relay, 1 PIN, 2 SRP id) + value u32 big-endian
//!     11    5 dest     address, same form
//!     16    8 seq      u64 big-endian; 0 on CONTROL frames, >= 1 on SEALED frames
//!     24    … body
//! ```
//!
//! The routing header (bytes 4..24) is the associated data of a sealed body, so the relay can
//! read it but not change it unnoticed.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::PROTOCOL_VERSION;
use crate::addr::Address;

/// Bytes of the routing header (after the length prefix).
pub const HEADER_LEN: usize = 20;
/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;
/// The largest frame accepted anywhere: bytes after the length prefix (1 MiB).
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// What a frame's body is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum FrameKind {
    /// A protobuf `Control` message between an endpoint and the relay.
    Control = 1,
    /// A sealed `Envelope` between a device and its enterprise server.
    Sealed = 2,
    /// An unsealed `Activation` message between a device and a server that share no key yet.
    Activation = 3,
}

impl FrameKind {
    fn from_u8(b: u8) -> Option<FrameKind> {
        match b {
            1 => Some(FrameKind::Control),
            2 => Some(FrameKind::Sealed),
            3 => Some(FrameKind::Activation),
            _ => None,
        }
    }
}

/// The routing header: all the relay reads of a frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Header {
    /// What the body is.
    pub kind: FrameKind,
    /// Who sent it.
    pub src: Address,
    /// Who it is for.
    pub dst: Address,
    /// The sender's sequence number for this direction (sealed frames), or 0.
    pub seq: u64,
}

impl Header {
    /// A header for a control frame.
    pub fn control(src: Address, dst: Address) -> Header {
        Header {
            kind: FrameKind::Control,
            src,
            dst,
            seq: 0,
        }
    }

    /// The 20-byte wire form, which is also the associated data of a sealed body.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = PROTOCOL_VERSION;
        out[1] = self.kind as u8;
        out[2..7].copy_from_slice(&self.src.to_bytes());
        out[7..12].copy_from_slice(&self.dst.to_bytes());
        out[12..20].copy_from_slice(&self.seq.to_be_bytes());
        out
    }

    /// Parses the 20-byte wire form.
    ///
    /// # Errors
    /// On a wrong length, version, kind or address.
    pub fn parse(b: &[u8]) -> Result<Header, FrameError> {
        let Some(b) = b.get(..HEADER_LEN) else {
            return Err(FrameError::TooShort { len: b.len() });
        };
        if b[0] != PROTOCOL_VERSION {
            return Err(FrameError::UnknownVersion(b[0]));
        }
        let kind = FrameKind::from_u8(b[1]).ok_or(FrameError::UnknownKind(b[1]))?;
        let addr = |r: &[u8]| -> Result<Address, FrameError> {
            let a: [u8; 5] = r.try_into().map_err(|_| FrameError::BadAddress)?;
            Address::from_bytes(a).ok_or(FrameError::BadAddress)
        };
        let src = addr(&b[2..7])?;
        let dst = addr(&b[7..12])?;
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&b[12..20]);
        Ok::<Header, FrameError>(Header {
            kind,
            src,
            dst,
            seq: u64::from_be_bytes(seq),
        })
        .and_then(|h| {
            if h.kind == FrameKind::Sealed && h.seq == 0 {
                Err(FrameError::ZeroSeq)
            } else {
                Ok(h)
            }
        })
    }
}

/// A whole frame.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Frame {
    /// The routing header.
    pub header: Header,
    /// The body: a `Control` message, or a sealed `Envelope`.
    pub body: Bytes,
}

/// Bytes that are not a frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix announces more than the receiver accepts.
    #[error("frame of {len} bytes announced; at most {max} are accepted")]
    TooLarge {
        /// Bytes announced.
        len: usize,
        /// Bytes accepted.
        max: usize,
    },
    /// Fewer bytes than a routing header.
    #[error("frame of {len} bytes is shorter than its 20-byte routing header")]
    TooShort {
        /// Bytes announced.
        len: usize,
    },
    /// A frame version this build does not speak.
    #[error("frame version {0} is not supported (this build speaks version 1)")]
    UnknownVersion(u8),
    /// A frame kind this build does not know.
    #[error("frame kind {0} is not known")]
    UnknownKind(u8),
    /// An address with an unknown tag or an out-of-range value.
    #[error("the routing header holds an invalid address")]
    BadAddress,
    /// A sealed frame numbered 0 (sealed frames are numbered from 1).
    #[error("a sealed frame has sequence number 0; sealed frames are numbered from 1")]
    ZeroSeq,
    /// Bytes left over after a whole frame, where exactly one was expected.
    #[error("{extra} bytes follow the frame where exactly one frame was expected")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
}

impl Frame {
    /// A frame of the given header and body.
    pub fn new(header: Header, body: impl Into<Bytes>) -> Frame {
        Frame {
            header,
            body: body.into(),
        }
    }

    /// Bytes on the wire: prefix, header and body.
    pub fn encoded_len(&self) -> usize {
        LEN_PREFIX + HEADER_LEN + self.body.len()
    }

    /// Appends the wire form to `dst`.
    ///
    /// # Errors
    /// [`FrameError::TooLarge`] when the body does not fit in [`MAX_FRAME_LEN`].
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), FrameError> {
        let len = HEADER_LEN + self.body.len();
        if len > MAX_FRAME_LEN {
            return Err(FrameError::TooLarge {
                len,
                max: MAX_FRAME_LEN,
            });
        }
        dst.reserve(LEN_PREFIX + len);
        // `len <= MAX_FRAME_LEN` (1 MiB) fits in a u32.
        dst.put_u32(len as u32);
        dst.put_slice(&self.header.to_bytes());
        dst.put_slice(&self.body);
        Ok(())
    }

    /// The wire form as one buffer.
    ///
    /// # Errors
    /// As [`Frame::encode`].
    pub fn to_bytes(&self) -> Result<Bytes, FrameError> {
        let mut b = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut b)?;
        Ok(b.freeze())
    }

    /// Takes one whole frame off the front of `buf`, if one is there.
    ///
    /// Returns `Ok(None)` when more bytes are needed (and reserves room for the rest of the
    /// frame, never more than `max_len` plus the prefix). The length prefix is checked against
    /// `max_len` before anything is allocated.
    ///
    /// # Errors
    /// A [`FrameError`] when the bytes cannot be a frame; the connection should be closed, as
    /// the stream cannot be resynchronised.
    pub fn decode(buf: &mut BytesMut, max_len: usize) -> Result<Option<Frame>, FrameError> {
        if buf.len() < LEN_PREFIX {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len > max_len.min(MAX_FRAME_LEN) {
            return Err(FrameError::TooLarge {
                len,
                max: max_len.min(MAX_FRAME_LEN),
            });
        }
        if len < HEADER_LEN {
            return Err(FrameError::TooShort { len });
        }
        // Check the header as soon as it is in, before waiting for (and buffering) the body.
        if buf.len() >= LEN_PREFIX + HEADER_LEN {
            Header::parse(&buf[LEN_PREFIX..LEN_PREFIX + HEADER_LEN])?;
        }
        if buf.len() < LEN_PREFIX + len {
            buf.reserve(LEN_PREFIX + len - buf.len());
            return Ok(None);
        }
        buf.advance(LEN_PREFIX);
        let mut whole = buf.split_to(len).freeze();
        let header = Header::parse(&whole[..HEADER_LEN])?;
        whole.advance(HEADER_LEN);
        Ok(Some(Frame {
            header,
            body: whole,
        }))
    }

    /// Decodes exactly one frame from a complete buffer (tests, fuzzing, stored queues).
    ///
    /// # Errors
    /// As [`Frame::decode`], or [`FrameError::TooShort`] when bytes are missing or left over.
    pub fn decode_exact(bytes: &[u8]) -> Result<Frame, FrameError> {
        let mut buf = BytesMut::from(bytes);
        match Frame::decode(&mut buf, MAX_FRAME_LEN)? {
            Some(f) if buf.is_empty() => Ok(f),
            Some(_) => Err(FrameError::TrailingBytes { extra: buf.len() }),
            None => Err(FrameError::TooShort { len: bytes.len() }),
        }
    }
}

impl Frame {
    /// A CONTROL frame carrying `msg`.
    pub fn control(src: Address, dst: Address, msg: &crate::schema::Control) -> Frame {
        Frame::new(
            Header::control(src, dst),
            prost::Message::encode_to_vec(msg),
        )
    }

    /// The `Control` message in a CONTROL frame.
    ///
    /// # Errors
    /// When this is not a CONTROL frame or its body does not decode.
    pub fn to_control(&self) -> Result<crate::schema::Control, crate::DecodeError> {
        if self.header.kind != FrameKind::Control {
            return Err(crate::DecodeError::Malformed(
                "expected a control frame".into(),
            ));
        }
        crate::decode_message(&self.body, MAX_FRAME_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::{Pin, SrpId};
    use proptest::prelude::*;

    fn sample() -> Frame {
        Frame::new(
            Header {
                kind: FrameKind::Sealed,
                src: Address::Srp(SrpId::new(40_012_345).expect("in range")),
                dst: Address::Pin(Pin(0x2A4F_9C01)),
                seq: 7,
            },
            &b"hello"[..],
        )
    }

    #[test]
    fn wire_layout_is_stable() {
        let b = sample().to_bytes().expect("encodes");
        assert_eq!(
            hex(&b),
            "00000019 01 02 02 02628a39 012a4f9c01 0000000000000007 68656c6c6f".replace(' ', "")
        );
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn partial_input_waits_then_decodes() {
        let wire = sample().to_bytes().expect("encodes");
        let mut buf = BytesMut::new();
        for (i, byte) in wire.iter().enumerate() {
            buf.put_u8(*byte);
            let got = Frame::decode(&mut buf, MAX_FRAME_LEN).expect("valid prefix");
            if i + 1 < wire.len() {
                assert!(got.is_none());
            } else {
                assert_eq!(got, Some(sample()));
            }
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_is_refused_before_allocation() {
        let mut buf = BytesMut::from(&[0xFFu8, 0xFF, 0xFF, 0xFF][..]);
        let cap = buf.capacity();
        assert_eq!(
            Frame::decode(&mut buf, MAX_FRAME_LEN),
            Err(FrameError::TooLarge {
                len: 0xFFFF_FFFF,
                max: MAX_FRAME_LEN
            })
        );
        assert_eq!(buf.capacity(), cap);
    }

    #[test]
    fn sealed_frame_numbered_zero_and_trailing_bytes_are_refused() {
        let zero = "000000140102000000000000000000000000000000000000";
        let bytes: Vec<u8> = (0..zero.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&zero[i..i + 2], 16).expect("hex"))
            .collect();
        assert_eq!(Frame::decode_exact(&bytes), Err(FrameError::ZeroSeq));
        let mut wire = sample().to_bytes().expect("encodes").to_vec();
        wire.push(0);
        assert_eq!(
            Frame::decode_exact(&wire),
            Err(FrameError::TrailingBytes { extra: 1 })
        );
    }

    #[test]
    fn bad_header_is_refused_before_body_arrives() {
        let mut buf = BytesMut::new();
        buf.put_u32(1000);
        buf.put_slice(&[9; HEADER_LEN]);
        assert_eq!(
            Frame::decode(&mut buf, MAX_FRAME_LEN),
            Err(FrameError::UnknownVersion(9))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = Frame::decode(&mut buf, 256) {}
        }

        #[test]
        fn round_trip(seq in 1..=u64::MAX, pin in any::<u32>(), body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let f = Frame::new(Header { kind: FrameKind::Sealed, src: Address::Pin(Pin(pin)), dst: Address::Relay, seq }, body);
            let wire = f.to_bytes().expect("fits");
            prop_assert_eq!(Frame::decode_exact(&wire), Ok(f));
        }
    }
}
