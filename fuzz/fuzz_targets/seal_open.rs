//! Hostile sealed frames into an `Opener` holding a fixed master key (32 bytes of 0x07, the key
//! of the worked example in docs/protocol.md).
//!
//! Byte 0 of the input picks a mode; the rest is that mode's input:
//!
//! - 0: the rest is the body of a SEALED frame with a fixed, valid header (S00000001 → PIN
//!   2A4F9C01, seq 1). It must be refused: nobody without the key can make a body that
//!   authenticates.
//! - 1: the rest is a whole routing header (20 bytes) and body. Refused as well.
//! - 2: the rest is a plaintext (codec byte and data) that this target seals itself with the
//!   direction key derived exactly as docs/protocol.md specifies (HKDF-SHA256 by hand, with
//!   HMAC). This is a peer that holds the key and sends garbage: unknown codecs, broken or
//!   bomb-sized zstd frames. It must authenticate (which checks the spec's key derivation and
//!   nonce layout against the implementation), and then be opened or refused without a panic;
//!   what opens must be the data (codec 0) or at most 4 MiB (codec 1).
//! - 3: the rest is a payload sealed with the matching `Sealer` (which compresses when that
//!   helps) and opened: it must come back unchanged; then a byte of the body or header picked
//!   by the input is flipped and the frame must be refused, and the original must still open
//!   afterwards (a forgery burns no sequence number); opening it twice is a replay.
//! - 4: like 2, but the plaintext is codec 1 and a real zstd frame of the rest (from byte 3
//!   on), damaged by XOR-ing byte 2 into the position given by bytes 0 and 1 (the C zstd code
//!   is not instrumented, so the fuzzer would seldom find a valid frame header by itself).
#![no_main]

use bramble_proto::seal::MAX_PLAINTEXT;
use bramble_proto::{
    Address, Direction, Frame, FrameKind, HEADER_LEN, Header, MasterKey, OpenError, Opener, Pin,
    ReplayError, ReplayWindow, Sealer, SrpId,
};
use libfuzzer_sys::fuzz_target;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hmac;

const MASTER: [u8; 32] = [7; 32];

fn master() -> MasterKey {
    MasterKey::from_bytes(MASTER)
}

fn header(seq: u64) -> Header {
    Header {
        kind: FrameKind::Sealed,
        src: Address::Srp(SrpId::new(1).expect("in range")),
        dst: Address::Pin(Pin(0x2A4F_9C01)),
        seq,
    }
}

fn opener() -> Opener {
    Opener::new(&master(), Direction::ToDevice, ReplayWindow::new()).expect("opener")
}

/// The server→device key as docs/protocol.md derives it: HKDF-SHA256, written out.
fn spec_key() -> LessSafeKey {
    let prk = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, b"bramble/v1/seal"),
        &MASTER,
    );
    let okm = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, prk.as_ref()),
        b"server->device\x01",
    );
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, okm.as_ref()).expect("32 bytes"))
}

/// The server→device nonce as docs/protocol.md lays it out.
fn spec_nonce(seq: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[0] = 1;
    n[4..].copy_from_slice(&seq.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

fn refuse(o: &mut Opener, f: &Frame) {
    match o.open(f) {
        Ok(p) => panic!(
            "a frame nobody sealed was accepted: {} bytes of plaintext",
            p.len()
        ),
        Err(OpenError::Authentication | OpenError::NotSealed | OpenError::Replay(_)) => {}
        Err(e) => panic!("refused after authentication, so it authenticated: {e}"),
    }
}

/// Seals `plain` (codec byte and data, unchecked) as the server would, and opens it.
fn open_authentic(plain: &[u8]) {
    let h = header(1);
    let mut body = plain.to_vec();
    spec_key()
        .seal_in_place_append_tag(spec_nonce(1), Aad::from(h.to_bytes()), &mut body)
        .expect("seals");
    match opener().open(&Frame::new(h, body)) {
        Ok(out) => match plain.first() {
            Some(0) => assert_eq!(out, &plain[1..]),
            Some(1) => assert!(out.len() <= MAX_PLAINTEXT),
            _ => panic!("codec {:?} accepted", plain.first()),
        },
        Err(OpenError::Malformed(_) | OpenError::TooLarge { .. }) => {}
        Err(e) => panic!("the spec's key derivation or nonce disagrees: {e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 5 {
        0 => refuse(&mut opener(), &Frame::new(header(1), rest.to_vec())),
        1 => {
            if rest.len() < HEADER_LEN {
                return;
            }
            let Ok(h) = Header::parse(&rest[..HEADER_LEN]) else {
                return;
            };
            refuse(&mut opener(), &Frame::new(h, rest[HEADER_LEN..].to_vec()));
        }
        2 => open_authentic(rest),
        4 => {
            let [hi, lo, x, payload @ ..] = rest else {
                return;
            };
            let mut plain = vec![1u8];
            plain.extend_from_slice(&zstd::bulk::compress(payload, 1).expect("compresses"));
            let at = 1 + usize::from(u16::from_be_bytes([*hi, *lo])) % (plain.len() - 1);
            plain[at] ^= *x;
            open_authentic(&plain);
        }
        _ => {
            let Some((&flip, payload)) = rest.split_first() else {
                return;
            };
            let mut s = Sealer::new(&master(), Direction::ToDevice, 1..u64::MAX).expect("sealer");
            let h = header(1);
            let f = match s.seal(h.src, h.dst, payload) {
                Ok(f) => f,
                Err(e) => panic!("sealing {} bytes failed: {e}", payload.len()),
            };
            assert_eq!(f.header, h);
            let mut o = opener();
            // Tampered copies first: each must be refused without using up seq 1.
            let mut body = f.body.to_vec();
            let i = usize::from(flip) % body.len();
            body[i] ^= 1 << (flip % 8);
            refuse(&mut o, &Frame::new(f.header, body));
            let mut hb = f.header.to_bytes();
            hb[usize::from(flip) % HEADER_LEN] ^= 1 << (flip % 8);
            if let Ok(h2) = Header::parse(&hb) {
                refuse(&mut o, &Frame::new(h2, f.body.clone()));
            }
            assert_eq!(o.open(&f).expect("the genuine frame opens"), payload);
            assert_eq!(
                o.open(&f),
                Err(OpenError::Replay(ReplayError::Replayed { seq: 1 }))
            );
        }
    }
});
