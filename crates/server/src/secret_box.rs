//! Secrets kept at rest in the configuration database: AES-256-GCM under a key among the
//! server's secrets (made on first use), a random nonce per value, and associated data that
//! ties each value to what it belongs to (a user's address). Stored as nonce || ciphertext.
//!
//! Owns: those keys. Used by the per-user mailbox passwords and the wireless backups.

use bramble_store::{Store, StoreError};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// One key among the server's secrets.
pub struct SecretBox {
    key: LessSafeKey,
    what: &'static str,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBox")
            .field("what", &self.what)
            .finish_non_exhaustive()
    }
}

fn rng_failed() -> StoreError {
    StoreError::Corrupt {
        what: "the system random number generator failed".into(),
    }
}

impl SecretBox {
    /// The key stored as `name` (made now when there is none); `what` names it in errors.
    ///
    /// # Errors
    /// When the database fails, the random source fails, or the stored key is damaged.
    pub async fn load(
        store: &Store,
        name: &str,
        what: &'static str,
    ) -> Result<SecretBox, StoreError> {
        // Made before it is needed, so a failing random source is an error, never a zero key.
        let mut fresh = vec![0u8; 32];
        SystemRandom::new()
            .fill(&mut fresh)
            .map_err(|_| rng_failed())?;
        let raw = store.secret_or_insert(name, || fresh).await?;
        let key = UnboundKey::new(&AES_256_GCM, &raw)
            .map(LessSafeKey::new)
            .map_err(|_| StoreError::Corrupt { what: what.into() })?;
        Ok(SecretBox { key, what })
    }

    /// `plain` sealed, bound to `aad`.
    ///
    /// # Errors
    /// When the random source or the cipher fails.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| rng_failed())?;
        let mut buf = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| StoreError::Corrupt {
                what: format!("encrypting with {} failed", self.what),
            })?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// What `sealed` holds, if it was sealed with this key and `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = ct.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .ok()?;
        Some(plain.to_vec())
    }
}
