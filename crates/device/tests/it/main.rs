//! bramble-device's integration tests: one binary, a module per area.

mod home;
mod mail;
mod manage;
mod organizer;
mod relay;

use bramble_proto::SrpId;
use bramble_proto::schema::{self, Envelope, envelope::Body};

/// An SRP id from its number.
pub fn srp(n: u32) -> SrpId {
    SrpId::new(n).expect("at most 8 digits")
}

/// A Ping envelope.
pub fn ping(note: &str) -> Envelope {
    Envelope {
        version: 1,
        body: Some(Body::Ping(schema::Ping {
            note: note.to_owned(),
            sent_at_ms: 0,
        })),
    }
}
