//! Hostile bytes as an `Envelope`: what a device or server does with an opened SEALED frame
//! (a peer that holds the key can still send anything). Checked: no panic, and a decoded
//! message re-encodes to something that decodes to the same message.
#![no_main]

use bramble_proto::schema::{Envelope, envelope};
use bramble_proto::seal::MAX_PLAINTEXT;
use bramble_proto::{DecodeError, decode_message};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let env = match decode_message::<Envelope>(data, MAX_PLAINTEXT) {
        Ok(m) => m,
        Err(DecodeError::TooLarge { .. }) => {
            assert!(data.len() > MAX_PLAINTEXT);
            return;
        }
        Err(DecodeError::Malformed(_)) => return,
    };
    let again = env.encode_to_vec();
    let back = decode_message::<Envelope>(&again, MAX_PLAINTEXT).expect("own encoding decodes");
    assert_eq!(back, env);

    // What a receiver dispatches on: a body it does not know (`None`) is answered with an
    // ErrorReport of code UNSUPPORTED.
    match &env.body {
        Some(envelope::Body::Ping(_) | envelope::Body::Pong(_)) => {}
        Some(envelope::Body::Error(e)) => {
            let _ = bramble_proto::schema::ErrorCode::try_from(e.code);
        }
        // Activation and policy bodies: their own checks live in `activation_decode`.
        Some(_) | None => {}
    }
});
