//! Addresses: the device's PIN, the enterprise server's SRP identifier, and the RefID that
//! names one message between a server and a device.

use std::fmt;
use std::str::FromStr;

/// A device's PIN: 32 bits, shown as 8 upper-case hex digits (`2A4F9C01`).
///
/// A PIN is not chosen: it is derived from the device's identity key
/// ([`Pin::from_identity_key`]), so a device can prove to the relay that a PIN is its own.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pin(pub u32);

/// The domain-separation prefix hashed in front of the identity key to make a PIN.
const PIN_CONTEXT: &[u8] = b"bramble/v1/pin";

impl Pin {
    /// The PIN of an Ed25519 identity public key: the first four bytes, big-endian, of
    /// SHA-256("bramble/v1/pin" || key).
    pub fn from_identity_key(public_key: &[u8]) -> Pin {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(PIN_CONTEXT);
        ctx.update(public_key);
        let digest = ctx.finish();
        let b = digest.as_ref();
        Pin(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08X}", self.0)
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pin({self})")
    }
}

/// Text that is not an address of the expected kind.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddrParseError {
    /// Not a PIN.
    #[error("{0:?} is not a PIN: a PIN is 8 hexadecimal digits, such as 2A4F9C01")]
    Pin(String),
    /// Not an SRP identifier.
    #[error("{0:?} is not an SRP identifier: it is S followed by 8 digits, such as S40012345")]
    Srp(String),
    /// Not a RefID.
    #[error("{0:?} is not a RefID: a RefID is a positive whole number")]
    RefId(String),
}

impl FromStr for Pin {
    type Err = AddrParseError;
    fn from_str(s: &str) -> Result<Pin, AddrParseError> {
        let t = s.trim();
        if t.len() != 8 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AddrParseError::Pin(s.to_owned()));
        }
        u32::from_str_radix(t, 16)
            .map(Pin)
            .map_err(|_| AddrParseError::Pin(s.to_owned()))
    }
}

/// An enterprise server's SRP identifier: `S` and 8 decimal digits (`S40012345`), as the
/// seeds' "Synchronization service Desktop [S<SRP_Identifier>]" shows it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SrpId(u32);

impl SrpId {
    /// The largest SRP number: 8 decimal digits.
    pub const MAX: u32 = 99_999_999;

    /// An SRP id from its number, if it has at most 8 digits.
    pub fn new(n: u32) -> Option<SrpId> {
        (n <= Self::MAX).then_some(SrpId(n))
    }

    /// The number behind the `S`.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for SrpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S{:08}", self.0)
    }
}

impl fmt::Debug for SrpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SrpId({self})")
    }
}

impl FromStr for SrpId {
    type Err = AddrParseError;
    fn from_str(s: &str) -> Result<SrpId, AddrParseError> {
        let t = s.trim();
        let digits = t.strip_prefix(['S', 's']).unwrap_or(t);
        if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AddrParseError::Srp(s.to_owned()));
        }
        digits
            .parse::<u32>()
            .ok()
            .and_then(SrpId::new)
            .ok_or_else(|| AddrParseError::Srp(s.to_owned()))
    }
}

/// A RefID: the number a server gives one message it forwards to a device, so both sides
/// can name it afterwards (More, reply, delete, delivery confirmation).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct RefId(pub u64);

impl fmt::Display for RefId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for RefId {
    type Err = AddrParseError;
    fn from_str(s: &str) -> Result<RefId, AddrParseError> {
        match s.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(RefId(n)),
            _ => Err(AddrParseError::RefId(s.to_owned())),
        }
    }
}

/// Where a frame comes from or goes to, as the relay sees it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Address {
    /// The relay itself (control frames).
    Relay,
    /// A device.
    Pin(Pin),
    /// An enterprise server.
    Srp(SrpId),
}

impl Address {
    /// Wire tag of [`Address::Relay`].
    pub const TAG_RELAY: u8 = 0;
    /// Wire tag of [`Address::Pin`].
    pub const TAG_PIN: u8 = 1;
    /// Wire tag of [`Address::Srp`].
    pub const TAG_SRP: u8 = 2;

    /// The 5-byte wire form: tag, then the value big-endian (0 for the relay).
    pub fn to_bytes(self) -> [u8; 5] {
        let (tag, v) = match self {
            Address::Relay => (Self::TAG_RELAY, 0),
            Address::Pin(p) => (Self::TAG_PIN, p.0),
            Address::Srp(s) => (Self::TAG_SRP, s.0),
        };
        let b = v.to_be_bytes();
        [tag, b[0], b[1], b[2], b[3]]
    }

    /// Parses the 5-byte wire form; `None` for an unknown tag or an out-of-range SRP id.
    pub fn from_bytes(b: [u8; 5]) -> Option<Address> {
        let v = u32::from_be_bytes([b[1], b[2], b[3], b[4]]);
        match b[0] {
            Self::TAG_RELAY if v == 0 => Some(Address::Relay),
            Self::TAG_PIN => Some(Address::Pin(Pin(v))),
            Self::TAG_SRP => SrpId::new(v).map(Address::Srp),
            _ => None,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Relay => f.write_str("relay"),
            Address::Pin(p) => write!(f, "PIN {p}"),
            Address::Srp(s) => write!(f, "SRP {s}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_text_round_trip() {
        let p: Pin = "2a4f9c01".parse().expect("valid");
        assert_eq!(p, Pin(0x2A4F_9C01));
        assert_eq!(p.to_string(), "2A4F9C01");
        assert!("2A4F9C0".parse::<Pin>().is_err());
        assert!("2A4F9C0G".parse::<Pin>().is_err());
        assert!("+2A4F9C0".parse::<Pin>().is_err());
    }

    #[test]
    fn srp_text_round_trip() {
        let s: SrpId = "S40012345".parse().expect("valid");
        assert_eq!(s.get(), 40_012_345);
        assert_eq!(s.to_string(), "S40012345");
        assert_eq!(
            "s7".parse::<SrpId>().expect("valid").to_string(),
            "S00000007"
        );
        assert!("S123456789".parse::<SrpId>().is_err());
        assert!("S".parse::<SrpId>().is_err());
        assert!(SrpId::new(100_000_000).is_none());
    }

    #[test]
    fn address_wire_round_trip() {
        for a in [
            Address::Relay,
            Address::Pin(Pin(0xDEAD_BEEF)),
            Address::Srp(SrpId(12_345_678)),
        ] {
            assert_eq!(Address::from_bytes(a.to_bytes()), Some(a));
        }
        assert_eq!(Address::from_bytes([9, 0, 0, 0, 0]), None);
        assert_eq!(Address::from_bytes([0, 0, 0, 0, 1]), None);
        assert_eq!(Address::from_bytes([2, 0xFF, 0xFF, 0xFF, 0xFF]), None);
    }

    #[test]
    fn pin_is_derived_from_key() {
        let a = Pin::from_identity_key(&[1; 32]);
        let b = Pin::from_identity_key(&[2; 32]);
        assert_ne!(a, b);
        assert_eq!(a, Pin::from_identity_key(&[1; 32]));
    }
}
