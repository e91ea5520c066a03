//! Hostile bytes into the frame decoder, as a relay or a phone receives them from TLS.
//!
//! Input layout: byte 0 and 1 choose the receiver's `max_len` and how the stream is cut into
//! reads; the rest is the byte stream. Checked:
//! - no panic, whatever the bytes and however they arrive;
//! - every frame decoded is exactly the bytes it came from (re-encoding round-trips), and no
//!   frame longer than the receiver's limit is ever returned;
//! - the same stream gives the same frames whether it arrives at once or in pieces;
//! - `Frame::decode_exact` agrees with the streaming decoder, and round-trips too.
#![no_main]

use bramble_proto::{Frame, FrameKind, HEADER_LEN, MAX_FRAME_LEN};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

/// What a receiver makes of a stream: the frames it took, then how it ended.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    frames: Vec<Frame>,
    /// `Some(error text)` when the receiver gave up on the stream.
    error: Option<String>,
    /// Bytes left over, waiting for more, when the stream ended without an error.
    pending: usize,
}

fn receive(stream: &[u8], max_len: usize, chunk: usize) -> Outcome {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut offset = 0; // stream bytes consumed by the frames taken so far
    for piece in stream.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match Frame::decode(&mut buf, max_len) {
                Ok(Some(f)) => {
                    check_frame(&f, &stream[offset..], max_len);
                    offset += f.encoded_len();
                    frames.push(f);
                }
                Ok(None) => break,
                Err(e) => {
                    return Outcome {
                        frames,
                        error: Some(e.to_string()),
                        pending: 0,
                    };
                }
            }
        }
    }
    assert_eq!(offset + buf.len(), stream.len(), "bytes lost or invented");
    Outcome {
        frames,
        error: None,
        pending: buf.len(),
    }
}

fn check_frame(f: &Frame, rest: &[u8], max_len: usize) {
    let len = HEADER_LEN + f.body.len();
    assert!(
        len <= max_len.min(MAX_FRAME_LEN),
        "frame over the limit returned"
    );
    let wire = f.to_bytes().expect("a decoded frame re-encodes");
    assert_eq!(
        &wire[..],
        &rest[..wire.len()],
        "re-encoding differs from the input"
    );
    assert_eq!(
        u32::from_be_bytes([wire[0], wire[1], wire[2], wire[3]]) as usize,
        len
    );
    // The header parses back to itself.
    let again = bramble_proto::Header::parse(&f.header.to_bytes()).expect("header re-parses");
    assert_eq!(again, f.header);
    // A CONTROL body goes on to the protobuf decoder, as the relay would do.
    if f.header.kind == FrameKind::Control {
        let _ = f.to_control();
    }
}

fuzz_target!(|data: &[u8]| {
    let (cfg, stream) = match data {
        [a, b, rest @ ..] => ((*a, *b), rest),
        _ => return,
    };
    // Small limits exercise the limit checks; 0x80.. means the protocol maximum.
    let max_len = if cfg.0 & 0x80 != 0 {
        MAX_FRAME_LEN
    } else {
        usize::from(cfg.0) * 4
    };
    let chunk = usize::from(cfg.1) + 1;

    let whole = receive(stream, max_len, stream.len().max(1));
    let pieces = receive(stream, max_len, chunk);
    let bytewise = receive(stream, max_len, 1);
    assert_eq!(whole, pieces, "result depends on how the stream was cut");
    assert_eq!(whole, bytewise, "result depends on how the stream was cut");

    match Frame::decode_exact(stream) {
        Ok(f) => {
            assert_eq!(&f.to_bytes().expect("re-encodes")[..], stream);
            let at_max = receive(stream, MAX_FRAME_LEN, stream.len().max(1));
            assert_eq!(at_max.frames, vec![f]);
            assert_eq!(at_max.pending, 0);
        }
        Err(_) => {
            let at_max = receive(stream, MAX_FRAME_LEN, stream.len().max(1));
            assert!(
                at_max.error.is_some() || at_max.frames.len() != 1 || at_max.pending != 0,
                "decode_exact refused what the stream decoder takes as exactly one frame"
            );
        }
    }
});
