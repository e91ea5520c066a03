//! Hostile bytes as a search result entry from an LDAP directory: BER decoded by lber (as
//! ldap3 does), then read by the server's `directory::entry::parse`. Checked: no panic, and
//! what comes out keeps its bounds.
//!
//! The module is compiled here from its file (`#[path]`); it depends only on ldap3's BER
//! types and hex.
#![no_main]

#[allow(dead_code)]
#[path = "../../crates/server/src/directory/entry.rs"]
mod entry;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((_, tag)) = ldap3::asn1::parse_tag(data) else {
        return;
    };
    let attrs = entry::Attributes {
        id: "entryUUID",
        mail: "mail",
        name: "cn",
    };
    if let Some(e) = entry::parse(tag, &attrs) {
        assert!(e.dn.len() <= entry::MAX_DN);
        assert!(!e.id.is_empty() && e.id.len() <= 2 * entry::MAX_VALUE);
        for v in [&e.mail, &e.name].into_iter().flatten() {
            assert!(!v.is_empty() && v.len() <= 4 * entry::MAX_VALUE);
            assert!(!v.chars().any(char::is_control));
        }
    }
});
