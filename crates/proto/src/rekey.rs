//! Key regeneration ("Regenerate the encryption key", an IT admin command): the next master
//! key of a device, agreed through an X25519 exchange whose messages travel sealed under the
//! current key, and bound to it.
//!
//! The server makes a [`KeyExchange`] and sends its public key (`RegenerateKey`); the device
//! makes its own, answers with its public key (`CommandResult.device_public`) and derives the
//! next key at once, but keeps using the current one until a frame opens only with the next;
//! the server derives the same key from the device's answer and switches. The next key is
//!
//! ```text
//! HKDF-SHA256(salt = "bramble/v1/rekey", ikm = X25519(a, B) || current master key,
//!             info = PIN (4 bytes, big-endian) || generation (4 bytes, big-endian))
//! ```
//!
//! so someone who learnt the current key but not the exchange's secrets learns nothing of the
//! next one, and someone who saw only the exchange cannot make it without the current key.
//!
//! Owns: those bytes. Must not touch: storing keys, sending messages.

use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use ring::rand::SystemRandom;

use crate::addr::Pin;
use crate::seal::MasterKey;

const REKEY_SALT: &[u8] = b"bramble/v1/rekey";

/// Why a key exchange failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RekeyError {
    /// The system's random source failed.
    #[error("the system's random source failed")]
    Random,
    /// The peer's public key is not a usable X25519 key.
    #[error("the other side's key for the new encryption key is not usable")]
    BadPeerKey,
}

/// One side's half of a key exchange: made, its public key sent, then used once.
pub struct KeyExchange {
    private: EphemeralPrivateKey,
    public: [u8; 32],
}

impl std::fmt::Debug for KeyExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyExchange").finish_non_exhaustive()
    }
}

impl KeyExchange {
    /// A fresh ephemeral X25519 key.
    ///
    /// # Errors
    /// [`RekeyError::Random`].
    pub fn new() -> Result<KeyExchange, RekeyError> {
        let rng = SystemRandom::new();
        let private =
            EphemeralPrivateKey::generate(&X25519, &rng).map_err(|_| RekeyError::Random)?;
        let public = private
            .compute_public_key()
            .map_err(|_| RekeyError::Random)?;
        let public: [u8; 32] = public.as_ref().try_into().map_err(|_| RekeyError::Random)?;
        Ok(KeyExchange { private, public })
    }

    /// The public key to send.
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// The next master key of device `pin`, generation `generation`, from the peer's public
    /// key and the `current` master key. Uses this exchange up.
    ///
    /// # Errors
    /// [`RekeyError::BadPeerKey`] when `peer_public` is not 32 bytes or is a degenerate key.
    pub fn next_key(
        self,
        peer_public: &[u8],
        current: &MasterKey,
        pin: Pin,
        generation: u32,
    ) -> Result<MasterKey, RekeyError> {
        if peer_public.len() != 32 {
            return Err(RekeyError::BadPeerKey);
        }
        let peer = UnparsedPublicKey::new(&X25519, peer_public);
        let mut ikm = agreement::agree_ephemeral(self.private, &peer, |shared| {
            let mut ikm = Vec::with_capacity(64);
            ikm.extend_from_slice(shared);
            ikm.extend_from_slice(current.as_bytes());
            ikm
        })
        .map_err(|_| RekeyError::BadPeerKey)?;
        struct Len32;
        impl ring::hkdf::KeyType for Len32 {
            fn len(&self) -> usize {
                32
            }
        }
        let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, REKEY_SALT).extract(&ikm);
        ikm.iter_mut().for_each(|b| *b = 0);
        let pin_bytes = pin.0.to_be_bytes();
        let gen_bytes = generation.to_be_bytes();
        let info = [&pin_bytes[..], &gen_bytes[..]];
        let mut out = [0u8; 32];
        // 32 bytes is far below HKDF's limit, so neither step can fail.
        if let Ok(okm) = prk.expand(&info, Len32) {
            let _ = okm.fill(&mut out);
        }
        Ok(MasterKey::from_bytes(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_derive_the_same_next_key_and_it_differs_from_the_current() {
        let current = MasterKey::from_bytes([7; 32]);
        let server = KeyExchange::new().expect("server half");
        let device = KeyExchange::new().expect("device half");
        let (sp, dp) = (server.public_key(), device.public_key());
        let a = server
            .next_key(&dp, &current, Pin(0x2100_0001), 2)
            .expect("server");
        let b = device
            .next_key(&sp, &current, Pin(0x2100_0001), 2)
            .expect("device");
        assert_eq!(a, b);
        assert_ne!(a, current);
    }

    #[test]
    fn the_next_key_depends_on_the_current_key_and_the_generation() {
        let s1 = KeyExchange::new().expect("half");
        let d1 = KeyExchange::new().expect("half");
        let dp = d1.public_key();
        let a = s1
            .next_key(&dp, &MasterKey::from_bytes([1; 32]), Pin(1), 2)
            .expect("a");
        let sp = KeyExchange::new().expect("half");
        let spk = sp.public_key();
        let b = d1
            .next_key(&spk, &MasterKey::from_bytes([1; 32]), Pin(1), 2)
            .expect("b");
        assert_ne!(a, b, "another exchange gives another key");
    }

    #[test]
    fn a_bad_peer_key_is_an_error_not_a_panic() {
        let current = MasterKey::from_bytes([7; 32]);
        for bad in [&[][..], &[0u8; 31][..], &[0u8; 33][..], &[0u8; 32][..]] {
            let ex = KeyExchange::new().expect("half");
            assert_eq!(
                ex.next_key(bad, &current, Pin(1), 2),
                Err(RekeyError::BadPeerKey),
                "{bad:?}"
            );
        }
    }
}
