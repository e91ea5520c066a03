//! Sealing: what makes a payload readable only by the device and its enterprise server.
//!
//! Outbound: the `Envelope` bytes are compressed with zstd and the shipped mail dictionary
//! ([`MAIL_DICTIONARY`]; only when that makes them smaller), prefixed with a codec byte, and
//! encrypted with AES-256-GCM under the key of the direction of travel, with the 20-byte
//! routing header as associated data and a nonce made of the direction and the frame's
//! sequence number. Inbound: the reverse, after the replay window
//! has cleared the sequence number.
//!
//! Keys: HKDF-SHA256 over the 32-byte master key the device and server agreed at activation,
//! salt `"bramble/v1/seal"`, info `"server->device"` or `"device->server"`, one AES-256 key
//! per direction. A (key, nonce) pair is never used twice because each direction has its own
//! key and each sender numbers its frames without repeats ([`Sealer`] refuses to run past the
//! range its owner reserved, which the owner persists before use).
//!
//! Compression before encryption leaks the compressed length: never put a secret and
//! attacker-chosen text in one sealed payload.

use std::sync::OnceLock;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use zstd::dict::{DecoderDictionary, EncoderDictionary};

use crate::addr::Address;
use crate::frame::{Frame, FrameKind, HEADER_LEN, Header, MAX_FRAME_LEN};
use crate::replay::{ReplayError, ReplayWindow};

const SALT: &[u8] = b"bramble/v1/seal";
const CODEC_RAW: u8 = 0;
/// zstd without a dictionary: opened, no longer sealed.
const CODEC_ZSTD: u8 = 1;
/// zstd with [`MAIL_DICTIONARY`] (version 1), the frame without a dictionary id.
const CODEC_ZSTD_MAIL1: u8 = 2;
/// Payloads shorter than this are not worth compressing.
const COMPRESS_MIN: usize = 64;
/// zstd level with the dictionary: on 2–8 KiB mail `bramble bench seal` measured level 2 with
/// it about as fast as level 1 without (0.90–0.98× in four release runs) and 3.53× smaller on
/// the wire; level 1 with it was faster (1.03×) but 3.31×, level 3 3.63× but 0.74×
/// (docs/benchmarks.md).
pub const ZSTD_LEVEL: i32 = 2;
/// The AES-GCM tag.
const TAG_LEN: usize = 16;

/// The zstd dictionary of codec 2, trained on mail (`bramble bench-dict` makes it again: see
/// `bramble_bench::dict`). Part of the protocol: a phone that opens codec 2 needs these
/// exact bytes (docs/protocol.md gives their SHA-256). A new dictionary gets a new codec
/// number, and openers keep the old ones.
pub const MAIL_DICTIONARY: &[u8] = include_bytes!("../dict/mail-1.zdict");

/// The dictionary prepared for compression, once per process (about the size of the
/// dictionary's tables), shared by every sealer.
fn encoder_dictionary() -> &'static EncoderDictionary<'static> {
    static D: OnceLock<EncoderDictionary<'static>> = OnceLock::new();
    D.get_or_init(|| EncoderDictionary::copy(MAIL_DICTIONARY, ZSTD_LEVEL))
}

/// The dictionary prepared for decompression, shared by every opener.
fn decoder_dictionary() -> &'static DecoderDictionary<'static> {
    static D: OnceLock<DecoderDictionary<'static>> = OnceLock::new();
    D.get_or_init(|| DecoderDictionary::copy(MAIL_DICTIONARY))
}

/// The largest plaintext a sealed frame may carry once decompressed (4 MiB).
pub const MAX_PLAINTEXT: usize = 4 << 20;
/// The largest plaintext that is sealed: what fits in a frame even if it does not compress.
pub const MAX_SEAL_INPUT: usize = MAX_FRAME_LEN - HEADER_LEN - TAG_LEN - 1;

/// The 32-byte secret a device and its server share after activation.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    /// A fresh random key.
    ///
    /// # Errors
    /// When the operating system's random source fails.
    pub fn generate() -> Result<MasterKey, SealError> {
        let mut k = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut k)
            .map_err(|_| SealError::Random)?;
        Ok(MasterKey(k))
    }

    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        MasterKey(bytes)
    }

    /// A key from a slice, if it is 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<MasterKey> {
        bytes.try_into().ok().map(MasterKey)
    }

    /// The key's bytes, for storing it.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn direction_key(&self, dir: Direction) -> LessSafeKey {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(&self.0);
        let info = [dir.info()];
        // `expand` fails only when the output is longer than 255 hash lengths; 32 bytes is not.
        let okm = prk.expand(&info, &AES_256_GCM).map(UnboundKey::from);
        match okm {
            Ok(k) => LessSafeKey::new(k),
            Err(_) => unreachable!("HKDF-SHA256 can always expand to 32 bytes"),
        }
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.0 = [0; 32];
    }
}

/// Which way a sealed frame travels.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Direction {
    /// Enterprise server to device.
    ToDevice,
    /// Device to enterprise server.
    ToServer,
}

impl Direction {
    fn info(self) -> &'static [u8] {
        match self {
            Direction::ToDevice => b"server->device",
            Direction::ToServer => b"device->server",
        }
    }

    fn nonce(self, seq: u64) -> Nonce {
        let mut n = [0u8; 12];
        n[0] = match self {
            Direction::ToDevice => 1,
            Direction::ToServer => 2,
        };
        n[4..].copy_from_slice(&seq.to_be_bytes());
        Nonce::assume_unique_for_key(n)
    }
}

/// Why a payload could not be sealed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// The sequence numbers reserved for this sender are used up; reserve more and extend.
    #[error("no sequence numbers left (next is {next}, reserved below {limit}); reserve more")]
    SeqExhausted {
        /// The next number that would have been used.
        next: u64,
        /// The end of the reserved range (exclusive).
        limit: u64,
    },
    /// The payload does not fit in a frame.
    #[error("payload of {len} bytes is larger than the {max} a frame can carry")]
    TooLarge {
        /// Bytes given.
        len: usize,
        /// Bytes allowed.
        max: usize,
    },
    /// Compression failed.
    #[error("compressing the payload failed: {0}")]
    Compress(String),
    /// Encryption failed (only on misuse of the primitive; never expected).
    #[error("encrypting the payload failed")]
    Crypto,
    /// The operating system's random source failed.
    #[error("the system random number generator failed")]
    Random,
}

/// Why a sealed frame was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    /// Not a sealed frame.
    #[error("not a sealed frame")]
    NotSealed,
    /// The replay window refused its sequence number.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// Authentication failed: the wrong key, or the frame (header or body) was altered.
    #[error("the frame could not be opened: it was sealed with another key or altered in transit")]
    Authentication,
    /// It authenticated, but the plaintext inside is not well formed.
    #[error("the opened payload is malformed: {0}")]
    Malformed(String),
    /// It would decompress to more than [`MAX_PLAINTEXT`].
    #[error("the payload would decompress to {len} bytes; at most {max} are accepted")]
    TooLarge {
        /// Bytes announced.
        len: u64,
        /// Bytes accepted.
        max: usize,
    },
}

/// Seals payloads for one direction of one device's session.
pub struct Sealer {
    key: LessSafeKey,
    dir: Direction,
    next: u64,
    limit: u64,
    compressor: zstd::bulk::Compressor<'static>,
}

/// A compressor with the mail dictionary, writing frames without the dictionary's id (the
/// codec byte names the dictionary) and with their content size (openers need it).
fn mail_compressor() -> Result<zstd::bulk::Compressor<'static>, SealError> {
    let err = |e: std::io::Error| SealError::Compress(e.to_string());
    let mut c =
        zstd::bulk::Compressor::with_prepared_dictionary(encoder_dictionary()).map_err(err)?;
    c.set_parameter(zstd::zstd_safe::CParameter::DictIdFlag(false))
        .map_err(err)?;
    c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(true))
        .map_err(err)?;
    Ok(c)
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("dir", &self.dir)
            .field("next", &self.next)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer that may use the sequence numbers in `seqs` (which the caller has reserved
    /// durably, so they are never used again after a restart).
    ///
    /// # Errors
    /// When the compressor cannot be set up.
    pub fn new(
        master: &MasterKey,
        dir: Direction,
        seqs: std::ops::Range<u64>,
    ) -> Result<Sealer, SealError> {
        Ok(Sealer {
            key: master.direction_key(dir),
            dir,
            next: seqs.start.max(1),
            limit: seqs.end,
            compressor: mail_compressor()?,
        })
    }

    /// The next sequence number this sealer will use.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// How many sequence numbers are left before [`Sealer::extend`] is needed.
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.next)
    }

    /// Continues with a newly reserved range; numbers below the current one are skipped.
    pub fn extend(&mut self, seqs: std::ops::Range<u64>) {
        self.next = self.next.max(seqs.start);
        self.limit = seqs.end;
    }

    /// Seals `plaintext` into a SEALED frame from `src` to `dst`, taking the next number.
    ///
    /// # Errors
    /// A [`SealError`]; no sequence number is used up then, except by a compression failure.
    pub fn seal(
        &mut self,
        src: Address,
        dst: Address,
        plaintext: &[u8],
    ) -> Result<Frame, SealError> {
        if plaintext.len() > MAX_SEAL_INPUT {
            return Err(SealError::TooLarge {
                len: plaintext.len(),
                max: MAX_SEAL_INPUT,
            });
        }
        if self.next >= self.limit {
            return Err(SealError::SeqExhausted {
                next: self.next,
                limit: self.limit,
            });
        }
        let seq = self.next;
        let header = Header {
            kind: FrameKind::Sealed,
            src,
            dst,
            seq,
        };

        // zstd writes straight into the body, after the codec byte: no second buffer and no
        // copy of the plaintext unless it goes raw (`bramble bench seal` and callgrind showed
        // the allocation and the two copies as the sealer's cost besides zstd and AES-GCM).
        // The room is zstd's bound, so compression cannot fail for want of space.
        let room = if plaintext.len() >= COMPRESS_MIN {
            zstd::zstd_safe::compress_bound(plaintext.len()).max(plaintext.len())
        } else {
            plaintext.len()
        };
        let mut body = Vec::with_capacity(1 + room + TAG_LEN);
        if plaintext.len() >= COMPRESS_MIN {
            body.push(CODEC_ZSTD_MAIL1);
            let mut out = std::io::Cursor::new(&mut body);
            out.set_position(1);
            let packed = self
                .compressor
                .compress_to_buffer(plaintext, &mut out)
                .map_err(|e| SealError::Compress(e.to_string()))?;
            let smaller = packed < plaintext.len() && body.len() == 1 + packed;
            if !smaller {
                body.clear();
            }
        }
        if body.is_empty() {
            body.push(CODEC_RAW);
            body.extend_from_slice(plaintext);
        }
        let aad = header.to_bytes();
        self.key
            .seal_in_place_append_tag(self.dir.nonce(seq), Aad::from(aad), &mut body)
            .map_err(|_| SealError::Crypto)?;
        self.next += 1;
        Ok(Frame::new(header, body))
    }
}

/// Opens sealed frames for one direction of one device's session.
pub struct Opener {
    key: LessSafeKey,
    dir: Direction,
    window: ReplayWindow,
    decompressor: zstd::bulk::Decompressor<'static>,
    /// Whether `decompressor` holds the mail dictionary now (codec 2) or none (codec 1).
    with_dictionary: bool,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("dir", &self.dir)
            .field("highest", &self.window.highest())
            .finish_non_exhaustive()
    }
}

impl Opener {
    /// An opener for frames travelling in `dir`, with the replay window given (a new one, or
    /// one [restored](ReplayWindow::restored) from the highest number accepted before).
    ///
    /// # Errors
    /// When the decompressor cannot be set up.
    pub fn new(
        master: &MasterKey,
        dir: Direction,
        window: ReplayWindow,
    ) -> Result<Opener, OpenError> {
        Ok(Opener {
            key: master.direction_key(dir),
            dir,
            window,
            decompressor: zstd::bulk::Decompressor::new()
                .map_err(|e| OpenError::Malformed(e.to_string()))?,
            with_dictionary: false,
        })
    }

    /// The highest sequence number accepted so far (persist it to restore the window).
    pub fn highest_seq(&self) -> u64 {
        self.window.highest()
    }

    /// Opens a sealed frame and returns its plaintext (the `Envelope` bytes).
    ///
    /// The sequence number is recorded only when the frame authenticates and decompresses, so
    /// a forged frame cannot burn a number.
    ///
    /// # Errors
    /// An [`OpenError`] saying why the frame was refused.
    pub fn open(&mut self, frame: &Frame) -> Result<Vec<u8>, OpenError> {
        if frame.header.kind != FrameKind::Sealed {
            return Err(OpenError::NotSealed);
        }
        let seq = frame.header.seq;
        self.window.check(seq)?;
        let mut buf = frame.body.to_vec();
        let aad = frame.header.to_bytes();
        let plain = self
            .key
            .open_in_place(self.dir.nonce(seq), Aad::from(aad), &mut buf)
            .map_err(|_| OpenError::Authentication)?;
        let (codec, data) = plain
            .split_first()
            .ok_or_else(|| OpenError::Malformed("empty payload".into()))?;
        let out = match *codec {
            CODEC_RAW => data.to_vec(),
            CODEC_ZSTD => self.decompress(data, false)?,
            CODEC_ZSTD_MAIL1 => self.decompress(data, true)?,
            other => return Err(OpenError::Malformed(format!("unknown codec {other}"))),
        };
        self.window.accept(seq)?;
        Ok(out)
    }

    fn decompress(&mut self, data: &[u8], dictionary: bool) -> Result<Vec<u8>, OpenError> {
        let size = zstd::zstd_safe::get_frame_content_size(data)
            .map_err(|_| OpenError::Malformed("not a zstd frame".into()))?
            .ok_or_else(|| OpenError::Malformed("zstd frame without a content size".into()))?;
        if size > MAX_PLAINTEXT as u64 {
            return Err(OpenError::TooLarge {
                len: size,
                max: MAX_PLAINTEXT,
            });
        }
        // One decompression context, pointed at the dictionary or at none as the codec says
        // (a reference to the shared prepared dictionary: no copy).
        if dictionary != self.with_dictionary {
            let set = if dictionary {
                self.decompressor
                    .set_prepared_dictionary(decoder_dictionary())
            } else {
                self.decompressor.set_dictionary(&[])
            };
            set.map_err(|e| OpenError::Malformed(format!("zstd: {e}")))?;
            self.with_dictionary = dictionary;
        }
        // `size <= MAX_PLAINTEXT`, so the cast is exact and the allocation bounded.
        let out = self
            .decompressor
            .decompress(data, size as usize)
            .map_err(|e| OpenError::Malformed(format!("zstd: {e}")))?;
        if out.len() as u64 != size {
            return Err(OpenError::Malformed(
                "zstd frame shorter than it announced".into(),
            ));
        }
        Ok(out)
    }
}

/// Both directions of one device's session, as held by one end.
#[derive(Debug)]
pub struct Session {
    /// Seals what this end sends.
    pub sealer: Sealer,
    /// Opens what this end receives.
    pub opener: Opener,
}

impl Session {
    /// The server's end: seals toward the device, opens what the device sends.
    ///
    /// # Errors
    /// When zstd cannot be set up.
    pub fn server(
        master: &MasterKey,
        tx: std::ops::Range<u64>,
        rx_highest: u64,
    ) -> Result<Session, SessionError> {
        Ok(Session {
            sealer: Sealer::new(master, Direction::ToDevice, tx)?,
            opener: Opener::new(
                master,
                Direction::ToServer,
                ReplayWindow::restored(rx_highest),
            )?,
        })
    }

    /// The device's end: seals toward the server, opens what the server sends.
    ///
    /// # Errors
    /// When zstd cannot be set up.
    pub fn device(
        master: &MasterKey,
        tx: std::ops::Range<u64>,
        rx_highest: u64,
    ) -> Result<Session, SessionError> {
        Ok(Session {
            sealer: Sealer::new(master, Direction::ToServer, tx)?,
            opener: Opener::new(
                master,
                Direction::ToDevice,
                ReplayWindow::restored(rx_highest),
            )?,
        })
    }
}

/// A session could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The sealing half failed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The opening half failed.
    #[error(transparent)]
    Open(#[from] OpenError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::{Pin, SrpId};
    use crate::replay::ReplayError;

    fn key() -> MasterKey {
        MasterKey::from_bytes([7; 32])
    }
    fn srv() -> Address {
        Address::Srp(SrpId::new(1).expect("in range"))
    }
    fn dev() -> Address {
        Address::Pin(Pin(0x2A4F_9C01))
    }

    #[test]
    fn seal_then_open() {
        let mut s = Sealer::new(&key(), Direction::ToDevice, 1..100).expect("sealer");
        let mut o = Opener::new(&key(), Direction::ToDevice, ReplayWindow::new()).expect("opener");
        let text = "Quarterly numbers attached. ".repeat(40);
        let f = s.seal(srv(), dev(), text.as_bytes()).expect("seals");
        assert!(
            f.body.len() < text.len() / 3,
            "compressed: {}",
            f.body.len()
        );
        assert!(!f.body.windows(9).any(|w| w == b"Quarterly"));
        assert_eq!(o.open(&f).expect("opens"), text.as_bytes());
        let tiny = s.seal(srv(), dev(), b"hi").expect("seals");
        assert_eq!(o.open(&tiny).expect("opens"), b"hi");
    }

    /// docs/protocol.md 10.3: a frame compressed without a dictionary (codec 1), as a peer
    /// that does not use the mail dictionary sends it, opens.
    #[test]
    fn the_specs_codec_1_frame_opens() {
        let frame = hex::decode(
            "0000004a01020200000001012a4f9c01000000000000000257c7f2f615f0fc3785153b81c930cbaf\
             35ff6dae97d0881b34bc7693602b4b09ae1ae8f5a265a02d3df47eede10ddd2b5ed421463150",
        )
        .expect("hex");
        let f = Frame::decode_exact(&frame).expect("a frame");
        let mut o = Opener::new(&key(), Direction::ToDevice, ReplayWindow::new()).expect("opener");
        let env = o.open(&f).expect("opens");
        assert_eq!(env.len(), 135);
        assert_eq!(&env[..8], b"\x08\x01\x82\x01\x81\x01\x0a\x78");
        assert_eq!(&env[8..128], "hello ".repeat(20).as_bytes());
    }

    /// Mail is sealed with the dictionary (codec 2), smaller than zstd alone makes it, and one
    /// opener takes codec 1 and codec 2 frames in any order.
    #[test]
    fn mail_is_sealed_with_the_dictionary_and_both_codecs_open() {
        let mail = "From: Dana Ortiz <dana.ortiz@example.com>\r\nTo: Team <team@example.com>\r\n\
                    Subject: Re: Q3 budget review\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
                    Hi all,\r\n\r\nThanks for the update. Please find the revised numbers \
                    attached; let me know if you have any questions before the meeting on \
                    Thursday.\r\n\r\nBest regards,\r\nDana\r\n\r\n> On Monday, the team wrote:\r\n\
                    > Could you send the latest figures for the project?\r\n";
        let mut s = Sealer::new(&key(), Direction::ToDevice, 1..100).expect("sealer");
        let mut o = Opener::new(&key(), Direction::ToDevice, ReplayWindow::new()).expect("opener");
        let with = s.seal(srv(), dev(), mail.as_bytes()).expect("seals");
        let plain = zstd::bulk::compress(mail.as_bytes(), 1).expect("zstd");
        assert!(
            with.body.len() < 1 + plain.len() + TAG_LEN,
            "{} with the dictionary, {} without",
            with.body.len(),
            1 + plain.len() + TAG_LEN
        );
        // a codec 1 frame, sealed by hand as a peer without the dictionary would
        let seq = s.next_seq();
        let header = Header {
            kind: FrameKind::Sealed,
            src: srv(),
            dst: dev(),
            seq,
        };
        let mut body = vec![CODEC_ZSTD];
        body.extend_from_slice(&plain);
        s.key
            .seal_in_place_append_tag(
                Direction::ToDevice.nonce(seq),
                Aad::from(header.to_bytes()),
                &mut body,
            )
            .expect("seals");
        s.next += 1;
        let without = Frame::new(header, body);
        let again = s.seal(srv(), dev(), mail.as_bytes()).expect("seals");
        for f in [&with, &without, &again] {
            assert_eq!(o.open(f).expect("opens"), mail.as_bytes());
        }
        // the codec byte names the dictionary: codec 2 data read as codec 1 is refused
        let mut swapped = o
            .key
            .open_in_place(
                Direction::ToDevice.nonce(again.header.seq),
                Aad::from(again.header.to_bytes()),
                &mut again.body.to_vec(),
            )
            .map(|p| p.to_vec())
            .expect("opens");
        assert_eq!(swapped[0], CODEC_ZSTD_MAIL1);
        swapped[0] = CODEC_ZSTD;
        assert!(o.decompress(&swapped[1..], false).is_err());
    }

    #[test]
    fn incompressible_payload_goes_raw_and_opens() {
        let mut s = Sealer::new(&key(), Direction::ToDevice, 1..100).expect("sealer");
        let mut o = Opener::new(&key(), Direction::ToDevice, ReplayWindow::new()).expect("opener");
        // xorshift noise: zstd cannot make it smaller, so it is sent raw (codec byte + text).
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..3000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let f = s.seal(srv(), dev(), &noise).expect("seals");
        assert_eq!(f.body.len(), 1 + noise.len() + TAG_LEN);
        assert_eq!(o.open(&f).expect("opens"), noise);
        let text = "Quarterly numbers attached. ".repeat(40);
        let f = s.seal(srv(), dev(), text.as_bytes()).expect("seals");
        assert_eq!(o.open(&f).expect("opens"), text.as_bytes());
    }

    #[test]
    fn replay_old_and_tampered_are_refused() {
        let mut s = Sealer::new(&key(), Direction::ToServer, 1..u64::MAX).expect("sealer");
        let mut o = Opener::new(&key(), Direction::ToServer, ReplayWindow::new()).expect("opener");
        let first = s.seal(dev(), srv(), b"first").expect("seals");
        o.open(&first).expect("opens");
        assert_eq!(
            o.open(&first),
            Err(OpenError::Replay(ReplayError::Replayed { seq: 1 }))
        );

        let mut late = Sealer::new(&key(), Direction::ToServer, 5000..u64::MAX).expect("sealer");
        o.open(&late.seal(dev(), srv(), b"jump").expect("seals"))
            .expect("opens");
        let old = s.seal(dev(), srv(), b"old").expect("seals");
        assert!(matches!(
            o.open(&old),
            Err(OpenError::Replay(ReplayError::TooOld { .. }))
        ));

        let good = late.seal(dev(), srv(), b"flip me").expect("seals");
        for bit in 0..good.body.len() * 8 {
            let mut body = good.body.to_vec();
            body[bit / 8] ^= 1 << (bit % 8);
            let bad = Frame::new(good.header, body);
            assert_eq!(o.open(&bad), Err(OpenError::Authentication), "bit {bit}");
        }
        let mut moved = good.clone();
        moved.header.dst = Address::Srp(SrpId::new(2).expect("in range"));
        assert_eq!(o.open(&moved), Err(OpenError::Authentication));
        // The forgeries burnt no sequence number: the real frame still opens.
        assert_eq!(o.open(&good).expect("opens"), b"flip me");
    }

    #[test]
    fn wrong_key_and_wrong_direction_fail() {
        let mut s = Sealer::new(&key(), Direction::ToDevice, 1..10).expect("sealer");
        let f = s.seal(srv(), dev(), b"secret").expect("seals");
        let mut other = Opener::new(
            &MasterKey::from_bytes([8; 32]),
            Direction::ToDevice,
            ReplayWindow::new(),
        )
        .expect("opener");
        assert_eq!(other.open(&f), Err(OpenError::Authentication));
        let mut reflected =
            Opener::new(&key(), Direction::ToServer, ReplayWindow::new()).expect("opener");
        assert_eq!(reflected.open(&f), Err(OpenError::Authentication));
    }

    #[test]
    fn sequence_range_is_enforced() {
        let mut s = Sealer::new(&key(), Direction::ToDevice, 1..3).expect("sealer");
        s.seal(srv(), dev(), b"1").expect("seals");
        s.seal(srv(), dev(), b"2").expect("seals");
        assert_eq!(
            s.seal(srv(), dev(), b"3"),
            Err(SealError::SeqExhausted { next: 3, limit: 3 })
        );
        s.extend(3..10);
        assert_eq!(s.seal(srv(), dev(), b"3").expect("seals").header.seq, 3);
    }

    #[test]
    fn oversized_input_is_refused() {
        let mut s = Sealer::new(&key(), Direction::ToDevice, 1..10).expect("sealer");
        let big = vec![0u8; MAX_SEAL_INPUT + 1];
        assert!(matches!(
            s.seal(srv(), dev(), &big),
            Err(SealError::TooLarge { .. })
        ));
    }
}
