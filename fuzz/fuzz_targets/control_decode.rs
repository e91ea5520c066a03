//! Hostile bytes as a `Control` message: what the relay does with the body of every CONTROL
//! frame, and what an endpoint does with the relay's. Checked: no panic, and a decoded
//! message re-encodes to something that decodes to the same message (unknown fields are
//! dropped on the way, which is allowed).
#![no_main]

use bramble_proto::schema::{Control, control};
use bramble_proto::{Address, DecodeError, Frame, MAX_FRAME_LEN, decode_message};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let msg = match decode_message::<Control>(data, MAX_FRAME_LEN) {
        Ok(m) => m,
        Err(DecodeError::TooLarge { .. }) => {
            assert!(data.len() > MAX_FRAME_LEN);
            return;
        }
        Err(DecodeError::Malformed(_)) => return,
    };
    let again = msg.encode_to_vec();
    let back = decode_message::<Control>(&again, MAX_FRAME_LEN).expect("own encoding decodes");
    assert_eq!(back, msg);

    // The same bytes inside a CONTROL frame decode the same way.
    let f = Frame::control(Address::Relay, Address::Relay, &msg);
    assert_eq!(f.to_control().expect("decodes"), msg);

    // What a receiver dispatches on; an unknown member (`None`) is ignored for Control.
    match &msg.msg {
        Some(control::Msg::Challenge(c)) => {
            let _ = c.nonce.len() == bramble_proto::identity::NONCE_LEN;
        }
        Some(control::Msg::DeviceHello(h)) => {
            // The relay's check of a hello, with a made-up nonce and channel binding.
            let _ = bramble_proto::identity::verify_proof(
                bramble_proto::Pin(h.pin),
                &h.identity_key,
                &[0u8; 32],
                &[0u8; 32],
                &h.signature,
            );
        }
        Some(control::Msg::ServerHello(h)) => {
            let _ = bramble_proto::SrpId::new(h.srp_id);
        }
        Some(control::Msg::Refused(r)) => {
            let _ = bramble_proto::schema::RefusalReason::try_from(r.reason);
        }
        Some(control::Msg::DeliveryReport(r)) => {
            let _ = bramble_proto::schema::DeliveryStatus::try_from(r.status);
        }
        Some(control::Msg::ActivationMail(m)) => {
            // The relay bounds the ETP.DAT it mails.
            let _ = m.etp_dat.len() <= bramble_proto::activation::MAX_ETP_DAT;
        }
        Some(
            control::Msg::Welcome(_)
            | control::Msg::Ack(_)
            | control::Msg::Keepalive(_)
            | control::Msg::ActivationMailResult(_),
        )
        | None => {}
    }
});
