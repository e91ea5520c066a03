//! A search result entry from the directory, read without trusting it: the BER structure is
//! checked at every step (ldap3's own `SearchEntry::construct` panics on a malformed entry),
//! values are bounded, and an entry without a usable identifier is left out.
//!
//! Depends on ldap3's BER types and hex only, so the fuzz target `directory_entry` compiles it
//! from its file. Owns: that parsing. Must not touch: connections, the store.

use ldap3::asn1::StructureTag;

/// Longest value kept from an entry (a name, an address, an identifier).
pub const MAX_VALUE: usize = 1024;
/// Longest DN kept.
pub const MAX_DN: usize = 4 * MAX_VALUE;
/// Attributes read from one entry at most (a server may send any it likes).
pub const MAX_ATTRIBUTES: usize = 64;
/// Values of one attribute looked at, at most.
pub const MAX_VALUES: usize = 64;

/// Which attributes hold what.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    /// The stable identifier (entryUUID, objectGUID).
    pub id: &'a str,
    /// The mail address.
    pub mail: &'a str,
    /// The display name.
    pub name: &'a str,
}

/// What an entry gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The entry's DN.
    pub dn: String,
    /// Its identifier: text, or hex when the value is binary.
    pub id: String,
    /// Its first usable mail address, lower-cased.
    pub mail: Option<String>,
    /// Its first usable name.
    pub name: Option<String>,
}

/// The entry in a SearchResultEntry (`[APPLICATION 4]`), or `None` when it is malformed, has
/// no identifier, or its identifier or DN is too long. A name or address that is not text,
/// is too long or holds control characters is left out.
pub fn parse(tag: StructureTag, attrs: &Attributes<'_>) -> Option<Parsed> {
    let mut parts = tag.match_id(4)?.expect_constructed()?.into_iter();
    let dn = String::from_utf8(parts.next()?.expect_primitive()?).ok()?;
    if dn.len() > MAX_DN {
        return None;
    }
    let mut id = None;
    let mut mail = None;
    let mut name = None;
    for attr in parts
        .next()?
        .expect_constructed()?
        .into_iter()
        .take(MAX_ATTRIBUTES)
    {
        let mut a = attr.expect_constructed()?.into_iter();
        let kind = String::from_utf8(a.next()?.expect_primitive()?).ok()?;
        let values = a.next()?.expect_constructed()?;
        let first_text = || {
            values
                .iter()
                .take(MAX_VALUES)
                .filter_map(|v| match &v.payload {
                    ldap3::asn1::PL::P(b) => text(b),
                    ldap3::asn1::PL::C(_) => None,
                })
                .next()
        };
        if kind.eq_ignore_ascii_case(attrs.id) && id.is_none() {
            let Some(ldap3::asn1::PL::P(v)) = values.first().map(|v| &v.payload) else {
                return None;
            };
            if v.is_empty() || v.len() > MAX_VALUE {
                return None;
            }
            id = Some(match std::str::from_utf8(v) {
                Ok(s) if !s.chars().any(char::is_control) => s.to_owned(),
                // binary identifiers (Active Directory's objectGUID)
                _ => hex::encode(v),
            });
        } else if kind.eq_ignore_ascii_case(attrs.mail) && mail.is_none() {
            mail = first_text().map(|m| m.to_lowercase());
        } else if kind.eq_ignore_ascii_case(attrs.name) && name.is_none() {
            name = first_text();
        }
    }
    Some(Parsed {
        dn,
        id: id?,
        mail,
        name,
    })
}

/// A value as text: UTF-8, trimmed, not empty, at most [`MAX_VALUE`] bytes, no control
/// characters.
fn text(v: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(v).ok()?.trim();
    (!s.is_empty() && s.len() <= MAX_VALUE && !s.chars().any(char::is_control))
        .then(|| s.to_owned())
}
