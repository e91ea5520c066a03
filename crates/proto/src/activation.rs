//! Enterprise Activation at the byte level: the ETP.DAT attachment a device sends through its
//! user's mailbox, the master key both sides derive from the OPAQUE session key, and the
//! domain-signed IT policy a device pins at activation.
//!
//! The steps and their order (seeds 000-003) are run by the device and the server's messaging
//! agent and policy service; this module only makes and checks bytes.

use prost::Message;
use ring::signature::{Ed25519KeyPair, KeyPair};

use crate::addr::Pin;
use crate::identity::{self, DeviceIdentity, IdentityError};
use crate::schema;
use crate::seal::MasterKey;

/// The largest ETP.DAT accepted (16 KiB).
pub const MAX_ETP_DAT: usize = 16 * 1024;
/// The largest signed IT policy accepted (256 KiB).
pub const MAX_POLICY: usize = 256 * 1024;
/// The name of the attachment.
pub const ETP_DAT_NAME: &str = "ETP.DAT";
const ETP_CONTEXT: &[u8] = b"bramble/v1/etp";
const POLICY_CONTEXT: &[u8] = b"bramble/v1/policy";
const MASTER_SALT: &[u8] = b"bramble/v1/master-key";

/// Why an ETP.DAT or a policy was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ActivationError {
    /// Larger than allowed.
    #[error("{what} of {len} bytes is larger than the {max} allowed")]
    TooLarge {
        /// What.
        what: &'static str,
        /// Bytes received.
        len: usize,
        /// Bytes allowed.
        max: usize,
    },
    /// Not the protobuf it should be.
    #[error("{0} is malformed")]
    Malformed(&'static str),
    /// A version this build does not speak.
    #[error("activation request version {0} is not supported")]
    Version(u32),
    /// The signature, key or PIN does not check out: the request was altered.
    #[error("the activation request was altered or forged: {0}")]
    Forged(IdentityError),
    /// A required field is empty.
    #[error("the activation request has no {0}")]
    Missing(&'static str),
    /// A policy signed by another domain than the one pinned.
    #[error("the IT policy is signed by another domain than the one this device belongs to")]
    ForeignDomain,
    /// A policy whose signature does not verify.
    #[error("the IT policy's signature does not verify")]
    BadPolicySignature,
}

/// An ETP.DAT whose signature, key and PIN check out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRequest {
    /// The address typed on the device (as typed; compare case-insensitively).
    pub email: String,
    /// The device's PIN.
    pub pin: Pin,
    /// The device's identity public key.
    pub identity_key: [u8; 32],
    /// OPAQUE KE1.
    pub ke1: Vec<u8>,
    /// When the device made it (unix ms; the device's clock).
    pub created_at_ms: i64,
    /// SHA-256 of the whole ETP.DAT: what a replay is recognised by.
    pub hash: [u8; 32],
    /// What the device says about itself.
    pub device: schema::DeviceFacts,
}

/// A sequence number for an ACTIVATION frame: unique per sender (microseconds since the epoch,
/// kept strictly increasing within the process). Activation frames are not sealed, so the
/// number serves only the relay's acks and queue.
pub fn next_activation_seq() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(1);
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev + 1);
        match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(p) => prev = p,
        }
    }
}

/// An ACTIVATION frame carrying `msg`.
pub fn activation_frame(
    src: crate::Address,
    dst: crate::Address,
    msg: schema::activation::Msg,
) -> crate::Frame {
    let header = crate::Header {
        kind: crate::FrameKind::Activation,
        src,
        dst,
        seq: next_activation_seq(),
    };
    crate::Frame::new(
        header,
        schema::Activation { msg: Some(msg) }.encode_to_vec(),
    )
}

/// The `Activation` message in an ACTIVATION frame (hostile bytes; at most 64 KiB).
///
/// # Errors
/// When it is not an ACTIVATION frame or does not decode.
pub fn read_activation(frame: &crate::Frame) -> Result<schema::activation::Msg, ActivationError> {
    if frame.header.kind != crate::FrameKind::Activation {
        return Err(ActivationError::Malformed("activation frame"));
    }
    crate::decode_message::<schema::Activation>(&frame.body, 64 * 1024)
        .ok()
        .and_then(|a| a.msg)
        .ok_or(ActivationError::Malformed("activation message"))
}

/// SHA-256 of some bytes.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Makes the ETP.DAT content for `email` with OPAQUE's `ke1`, signed by the device.
///
/// # Errors
/// When the random source fails.
pub fn build_etp_dat(
    identity: &DeviceIdentity,
    email: &str,
    ke1: &[u8],
    device: schema::DeviceFacts,
    now_ms: i64,
) -> Result<Vec<u8>, ActivationError> {
    let mut nonce = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| ActivationError::Missing("random nonce"))?;
    let request = schema::ActivationRequest {
        version: 1,
        email: email.trim().to_owned(),
        pin: identity.pin().0,
        identity_key: identity.public_key().to_vec().into(),
        ke1: ke1.to_vec().into(),
        created_at_ms: now_ms,
        nonce: nonce.to_vec().into(),
        device: Some(device),
    }
    .encode_to_vec();
    let signature = identity.sign(ETP_CONTEXT, &request);
    Ok(schema::EtpDat {
        request: request.into(),
        signature: signature.into(),
    }
    .encode_to_vec())
}

/// Parses and checks an ETP.DAT taken from a mailbox (hostile bytes): size, form, version,
/// that the PIN is the identity key's and that the key signed the request.
///
/// # Errors
/// An [`ActivationError`] saying what is wrong.
pub fn open_etp_dat(bytes: &[u8]) -> Result<VerifiedRequest, ActivationError> {
    if bytes.len() > MAX_ETP_DAT {
        return Err(ActivationError::TooLarge {
            what: "ETP.DAT",
            len: bytes.len(),
            max: MAX_ETP_DAT,
        });
    }
    let etp = schema::EtpDat::decode(bytes).map_err(|_| ActivationError::Malformed("ETP.DAT"))?;
    let req = schema::ActivationRequest::decode(etp.request.as_ref())
        .map_err(|_| ActivationError::Malformed("the activation request in ETP.DAT"))?;
    if req.version != 1 {
        return Err(ActivationError::Version(req.version));
    }
    let key: [u8; 32] = req.identity_key.as_ref().try_into().map_err(|_| {
        ActivationError::Forged(IdentityError::BadPublicKey(req.identity_key.len()))
    })?;
    let actual = Pin::from_identity_key(&key);
    if actual != Pin(req.pin) {
        return Err(ActivationError::Forged(IdentityError::PinMismatch {
            claimed: Pin(req.pin),
            actual,
        }));
    }
    identity::verify(&key, ETP_CONTEXT, &etp.request, &etp.signature)
        .map_err(ActivationError::Forged)?;
    if req.email.trim().is_empty() {
        return Err(ActivationError::Missing("email address"));
    }
    if req.ke1.is_empty() {
        return Err(ActivationError::Missing("password exchange (KE1)"));
    }
    Ok(VerifiedRequest {
        email: req.email,
        pin: actual,
        identity_key: key,
        ke1: req.ke1.to_vec(),
        created_at_ms: req.created_at_ms,
        hash: sha256(bytes),
        device: req.device.unwrap_or_default(),
    })
}

/// The master key both sides take from the OPAQUE session key, bound to the device's PIN and
/// identity key: HKDF-SHA256(salt "bramble/v1/master-key", ikm session key,
/// info pin (4 bytes big-endian) || identity key), 32 bytes.
pub fn master_key(session_key: &[u8], pin: Pin, identity_key: &[u8]) -> MasterKey {
    struct Len32;
    impl ring::hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, MASTER_SALT).extract(session_key);
    let pin_bytes = pin.0.to_be_bytes();
    let info = [&pin_bytes[..], identity_key];
    let mut out = [0u8; 32];
    // 32 bytes is far below HKDF's limit, so neither step can fail.
    if let Ok(okm) = prk.expand(&info, Len32) {
        let _ = okm.fill(&mut out);
    }
    MasterKey::from_bytes(out)
}

/// The domain's policy-signing key (Ed25519), kept by the server.
pub struct DomainKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for DomainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DomainKey").finish_non_exhaustive()
    }
}

impl DomainKey {
    /// A new key as PKCS#8, to store.
    ///
    /// # Errors
    /// When the random source fails.
    pub fn generate_pkcs8() -> Result<Vec<u8>, ActivationError> {
        Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| ActivationError::Missing("random key"))
    }

    /// The key from its stored PKCS#8.
    ///
    /// # Errors
    /// When the bytes are not an Ed25519 key.
    pub fn from_pkcs8(bytes: &[u8]) -> Result<DomainKey, ActivationError> {
        Ed25519KeyPair::from_pkcs8(bytes)
            .map(|pair| DomainKey { pair })
            .map_err(|_| ActivationError::Malformed("domain signing key"))
    }

    /// The public key devices pin.
    pub fn public_key(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// Signs a policy.
    pub fn sign_policy(&self, policy: &schema::ItPolicy) -> schema::SignedPolicy {
        let body = policy.encode_to_vec();
        let mut m = Vec::with_capacity(POLICY_CONTEXT.len() + body.len());
        m.extend_from_slice(POLICY_CONTEXT);
        m.extend_from_slice(&body);
        let signature = self.pair.sign(&m).as_ref().to_vec();
        schema::SignedPolicy {
            policy: body.into(),
            domain_key: self.public_key().into(),
            signature: signature.into(),
        }
    }
}

/// Checks a signed policy: its signature, and that its domain key is `pinned` when a key is
/// pinned already. Returns the policy and its hash.
///
/// # Errors
/// [`ActivationError::ForeignDomain`], [`ActivationError::BadPolicySignature`], or
/// malformed/too large.
pub fn verify_policy(
    signed: &schema::SignedPolicy,
    pinned: Option<&[u8]>,
) -> Result<(schema::ItPolicy, [u8; 32]), ActivationError> {
    if signed.policy.len() > MAX_POLICY {
        return Err(ActivationError::TooLarge {
            what: "IT policy",
            len: signed.policy.len(),
            max: MAX_POLICY,
        });
    }
    if let Some(pin) = pinned
        && pin != signed.domain_key.as_ref()
    {
        return Err(ActivationError::ForeignDomain);
    }
    identity::verify(
        &signed.domain_key,
        POLICY_CONTEXT,
        &signed.policy,
        &signed.signature,
    )
    .map_err(|_| ActivationError::BadPolicySignature)?;
    let policy = schema::ItPolicy::decode(signed.policy.as_ref())
        .map_err(|_| ActivationError::Malformed("IT policy"))?;
    Ok((policy, sha256(&signed.policy)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn hostile_etp_dat_and_policies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            if let Ok(req) = open_etp_dat(&bytes) {
                prop_assert_eq!(req.pin, Pin::from_identity_key(&req.identity_key));
            }
            if let Ok(signed) = schema::SignedPolicy::decode(bytes.as_slice()) {
                let _ = verify_policy(&signed, None);
            }
        }
    }

    #[test]
    fn etp_dat_round_trip_and_tampering() {
        let id = DeviceIdentity::generate().expect("keygen");
        let etp = build_etp_dat(
            &id,
            "alice@example.com",
            b"ke1-bytes",
            schema::DeviceFacts::default(),
            42,
        )
        .expect("builds");
        let req = open_etp_dat(&etp).expect("verifies");
        assert_eq!(req.pin, id.pin());
        assert_eq!(req.email, "alice@example.com");
        assert_eq!(req.ke1, b"ke1-bytes");
        for i in 0..etp.len() {
            let mut bad = etp.clone();
            bad[i] ^= 0x01;
            assert!(open_etp_dat(&bad).is_err(), "byte {i} flipped was accepted");
        }
        assert!(matches!(
            open_etp_dat(&vec![0; MAX_ETP_DAT + 1]),
            Err(ActivationError::TooLarge { .. })
        ));
        assert!(open_etp_dat(b"\xff\xff\xff").is_err());
    }

    #[test]
    fn master_key_is_bound_to_the_device() {
        let a = master_key(&[1; 64], Pin(1), &[2; 32]);
        assert_eq!(a, master_key(&[1; 64], Pin(1), &[2; 32]));
        assert_ne!(a, master_key(&[1; 64], Pin(2), &[2; 32]));
        assert_ne!(a, master_key(&[1; 64], Pin(1), &[3; 32]));
    }

    #[test]
    fn policies_from_another_domain_are_refused() {
        let ours =
            DomainKey::from_pkcs8(&DomainKey::generate_pkcs8().expect("keygen")).expect("loads");
        let theirs =
            DomainKey::from_pkcs8(&DomainKey::generate_pkcs8().expect("keygen")).expect("loads");
        let p = schema::ItPolicy {
            name: "Default".into(),
            version: 1,
            issued_at_ms: 0,
            rules: vec![],
        };
        let signed = ours.sign_policy(&p);
        let (got, _) = verify_policy(&signed, None).expect("first use");
        assert_eq!(got, p);
        verify_policy(&signed, Some(&ours.public_key())).expect("same domain");
        let foreign = theirs.sign_policy(&p);
        assert_eq!(
            verify_policy(&foreign, Some(&ours.public_key())),
            Err(ActivationError::ForeignDomain)
        );
        let mut forged = signed.clone();
        forged.policy = schema::ItPolicy {
            name: "Lax".into(),
            ..p
        }
        .encode_to_vec()
        .into();
        assert_eq!(
            verify_policy(&forged, Some(&ours.public_key())),
            Err(ActivationError::BadPolicySignature)
        );
    }
}
