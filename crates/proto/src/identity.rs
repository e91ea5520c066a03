//! A device's identity: an Ed25519 key pair whose public key fixes the device's PIN, and the
//! proof of possession the relay asks for before it routes anything to that PIN.

use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use crate::addr::Pin;

/// The TLS exporter label whose output binds the relay proof to one TLS connection.
pub const CHANNEL_BINDING_LABEL: &[u8] = b"EXPORTER-bramble-relay-auth";
/// Bytes of exporter output used as channel binding.
pub const CHANNEL_BINDING_LEN: usize = 32;
/// Bytes of the relay's challenge nonce.
pub const NONCE_LEN: usize = 32;
const PROOF_CONTEXT: &[u8] = b"bramble/v1/relay-auth";

/// Why an identity could not be loaded or a proof was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    /// The stored key is not a valid Ed25519 PKCS#8 document.
    #[error("the device identity key is damaged (not an Ed25519 PKCS#8 key)")]
    BadKey,
    /// The random source failed.
    #[error("the system random number generator failed")]
    Random,
    /// The public key is not 32 bytes.
    #[error("an identity public key is 32 bytes; {0} were given")]
    BadPublicKey(usize),
    /// The claimed PIN is not the PIN of the key.
    #[error("PIN {claimed} does not belong to this identity key (its PIN is {actual})")]
    PinMismatch {
        /// What the device claimed.
        claimed: Pin,
        /// What its key gives.
        actual: Pin,
    },
    /// The signature does not verify.
    #[error("the proof of identity did not verify")]
    BadSignature,
    /// The nonce or channel binding has the wrong length.
    #[error("the challenge or channel binding has the wrong length")]
    BadChallenge,
}

/// A device's long-term identity key pair.
pub struct DeviceIdentity {
    pkcs8: Vec<u8>,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for DeviceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceIdentity")
            .field("pin", &self.pin())
            .finish_non_exhaustive()
    }
}

impl DeviceIdentity {
    /// A new random identity.
    ///
    /// # Errors
    /// When the random source fails.
    pub fn generate() -> Result<DeviceIdentity, IdentityError> {
        let doc = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .map_err(|_| IdentityError::Random)?;
        Self::from_pkcs8(doc.as_ref())
    }

    /// An identity from its stored PKCS#8 document.
    ///
    /// # Errors
    /// [`IdentityError::BadKey`] when the bytes are not one.
    pub fn from_pkcs8(bytes: &[u8]) -> Result<DeviceIdentity, IdentityError> {
        let pair = Ed25519KeyPair::from_pkcs8(bytes).map_err(|_| IdentityError::BadKey)?;
        Ok(DeviceIdentity {
            pkcs8: bytes.to_vec(),
            pair,
        })
    }

    /// The PKCS#8 document to store.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.pair.public_key().as_ref());
        k
    }

    /// This device's PIN.
    pub fn pin(&self) -> Pin {
        Pin::from_identity_key(self.pair.public_key().as_ref())
    }

    /// Signs `context || message` (a context string keeps signatures of one purpose from
    /// passing for another).
    pub fn sign(&self, context: &[u8], message: &[u8]) -> Vec<u8> {
        let mut m = Vec::with_capacity(context.len() + message.len());
        m.extend_from_slice(context);
        m.extend_from_slice(message);
        self.pair.sign(&m).as_ref().to_vec()
    }

    /// Signs the relay's challenge, bound to this TLS connection.
    ///
    /// # Errors
    /// [`IdentityError::BadChallenge`] on wrong lengths.
    pub fn prove(&self, nonce: &[u8], channel_binding: &[u8]) -> Result<Vec<u8>, IdentityError> {
        let msg = proof_message(nonce, channel_binding)?;
        Ok(self.pair.sign(&msg).as_ref().to_vec())
    }
}

fn proof_message(nonce: &[u8], channel_binding: &[u8]) -> Result<Vec<u8>, IdentityError> {
    if nonce.len() != NONCE_LEN || channel_binding.len() != CHANNEL_BINDING_LEN {
        return Err(IdentityError::BadChallenge);
    }
    let mut m = Vec::with_capacity(PROOF_CONTEXT.len() + NONCE_LEN + CHANNEL_BINDING_LEN);
    m.extend_from_slice(PROOF_CONTEXT);
    m.extend_from_slice(nonce);
    m.extend_from_slice(channel_binding);
    Ok(m)
}

/// Checks an Ed25519 signature over `context || message`.
///
/// # Errors
/// [`IdentityError::BadPublicKey`] or [`IdentityError::BadSignature`].
pub fn verify(
    public_key: &[u8],
    context: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), IdentityError> {
    if public_key.len() != 32 {
        return Err(IdentityError::BadPublicKey(public_key.len()));
    }
    let mut m = Vec::with_capacity(context.len() + message.len());
    m.extend_from_slice(context);
    m.extend_from_slice(message);
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(&m, signature)
        .map_err(|_| IdentityError::BadSignature)
}

/// The relay's check of a device's hello: the key gives the claimed PIN and signed this
/// connection's challenge. Returns the PIN.
///
/// # Errors
/// An [`IdentityError`] naming what failed.
pub fn verify_proof(
    claimed: Pin,
    public_key: &[u8],
    nonce: &[u8],
    channel_binding: &[u8],
    signature: &[u8],
) -> Result<Pin, IdentityError> {
    if public_key.len() != 32 {
        return Err(IdentityError::BadPublicKey(public_key.len()));
    }
    let actual = Pin::from_identity_key(public_key);
    if actual != claimed {
        return Err(IdentityError::PinMismatch { claimed, actual });
    }
    let msg = proof_message(nonce, channel_binding)?;
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(&msg, signature)
        .map_err(|_| IdentityError::BadSignature)?;
    Ok(actual)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_verifies_only_for_the_right_key_pin_and_channel() {
        let me = DeviceIdentity::generate().expect("keygen");
        let thief = DeviceIdentity::generate().expect("keygen");
        let nonce = [1u8; NONCE_LEN];
        let cb = [2u8; CHANNEL_BINDING_LEN];
        let sig = me.prove(&nonce, &cb).expect("signs");
        assert_eq!(
            verify_proof(me.pin(), &me.public_key(), &nonce, &cb, &sig),
            Ok(me.pin())
        );
        // Another connection (channel binding) or another challenge: refused.
        assert_eq!(
            verify_proof(me.pin(), &me.public_key(), &nonce, &[3u8; 32], &sig),
            Err(IdentityError::BadSignature)
        );
        // Claiming my PIN with the thief's key: the PIN does not match the key.
        let tsig = thief.prove(&nonce, &cb).expect("signs");
        assert!(matches!(
            verify_proof(me.pin(), &thief.public_key(), &nonce, &cb, &tsig),
            Err(IdentityError::PinMismatch { .. })
        ));
        // Claiming my PIN with my public key but the thief's signature: bad signature.
        assert_eq!(
            verify_proof(me.pin(), &me.public_key(), &nonce, &cb, &tsig),
            Err(IdentityError::BadSignature)
        );
    }

    #[test]
    fn pkcs8_round_trip() {
        let me = DeviceIdentity::generate().expect("keygen");
        let again = DeviceIdentity::from_pkcs8(me.pkcs8()).expect("loads");
        assert_eq!(again.pin(), me.pin());
        assert_eq!(
            DeviceIdentity::from_pkcs8(b"junk").err(),
            Some(IdentityError::BadKey)
        );
    }
}
