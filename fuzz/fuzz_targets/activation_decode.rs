//! Hostile bytes in Enterprise Activation: as an ETP.DAT attachment taken from a mailbox, as
//! the body of an ACTIVATION frame, and as a signed IT policy. Checked: no panic; an ETP.DAT
//! that is accepted names the PIN of its own identity key; a policy that verifies against a
//! pinned domain key was signed with that key.
#![no_main]

use bramble_proto::activation::{open_etp_dat, read_activation, verify_policy};
use bramble_proto::schema::SignedPolicy;
use bramble_proto::{Address, Frame, FrameKind, Header, Pin, SrpId};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = open_etp_dat(data) {
        assert_eq!(req.pin, Pin::from_identity_key(&req.identity_key));
        assert!(!req.ke1.is_empty());
    }

    let header = Header {
        kind: FrameKind::Activation,
        src: Address::Srp(SrpId::new(1).expect("in range")),
        dst: Address::Pin(Pin(1)),
        seq: 1,
    };
    let _ = read_activation(&Frame::new(header, data.to_vec()));

    if let Ok(signed) = SignedPolicy::decode(data) {
        let pinned = signed.domain_key.to_vec();
        if verify_policy(&signed, Some(&pinned)).is_ok() {
            assert_eq!(pinned, signed.domain_key.as_ref());
        }
        let _ = verify_policy(&signed, Some(&[0u8; 32]));
    }
});
