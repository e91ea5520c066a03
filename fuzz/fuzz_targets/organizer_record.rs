//! Organizer records as a CalDAV/CardDAV server or a device may send them: `parse` for every
//! database must return a record or an error, never panic; an edit of whatever parsed must
//! read back.
#![no_main]

use bramble_organizer::{Database, Fields, edit_record, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for db in Database::ALL {
        if parse(db, text).is_ok() {
            let fields = Fields {
                title: Some("fuzzed".into()),
                note: Some("a, b; c\nd".into()),
                ..Fields::default()
            };
            if let Ok(out) = edit_record(db, text, &fields, 1_700_000_000_000) {
                assert!(parse(db, &out).is_ok(), "an edit does not read back");
            }
        }
    }
});
