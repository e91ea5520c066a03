//! Per-user mailbox passwords, for mail servers where no service account reaches every
//! mailbox. The administrator gives each user's password once; the server keeps it encrypted
//! in the configuration database (AES-256-GCM under a key among the server's secrets, the
//! user's address as associated data) and decrypted only in memory, for the IMAP login.
//!
//! Owns: that key and the in-memory table. Must not touch: mailboxes (the watchers log in).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bramble_store::{Store, StoreError};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use super::mailbox::PasswordLookup;

/// The name of the encryption key among the server's secrets.
pub const CREDENTIAL_KEY: &str = "mail_credential_key";
const AAD_CONTEXT: &[u8] = b"bramble/v1/mail-credential/";

/// The users' mailbox passwords.
pub struct Credentials {
    key: LessSafeKey,
    cache: Arc<RwLock<HashMap<String, String>>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.cache.read().map(|c| c.len()).unwrap_or(0);
        f.debug_struct("Credentials")
            .field("users", &n)
            .finish_non_exhaustive()
    }
}

fn aad(email: &str) -> Vec<u8> {
    let mut a = AAD_CONTEXT.to_vec();
    a.extend_from_slice(email.as_bytes());
    a
}

impl Credentials {
    /// Loads the key (made on first use) and decrypts every stored password. One that does not
    /// decrypt is logged and left out.
    ///
    /// # Errors
    /// When the database fails or the stored key is damaged.
    pub async fn load(store: &Store) -> Result<Credentials, StoreError> {
        // Made before it is needed, so a failing random source is an error, never a zero key.
        let mut fresh = vec![0u8; 32];
        SystemRandom::new()
            .fill(&mut fresh)
            .map_err(|_| StoreError::Corrupt {
                what: "the system random number generator failed".into(),
            })?;
        let raw = store.secret_or_insert(CREDENTIAL_KEY, || fresh).await?;
        let key = UnboundKey::new(&AES_256_GCM, &raw)
            .map(LessSafeKey::new)
            .map_err(|_| StoreError::Corrupt {
                what: "the mail credential key".into(),
            })?;
        let creds = Credentials {
            key,
            cache: Arc::new(RwLock::new(HashMap::new())),
        };
        for (email, sealed) in store.mail_credentials().await? {
            match creds.open(&email, &sealed) {
                Some(pw) => {
                    if let Ok(mut c) = creds.cache.write() {
                        c.insert(email, pw);
                    }
                }
                None => {
                    tracing::error!(user = %email, "the stored mailbox password does not decrypt; set it again")
                }
            }
        }
        Ok(creds)
    }

    /// The lookup the IMAP watchers log in with.
    pub fn lookup(&self) -> PasswordLookup {
        let cache = self.cache.clone();
        PasswordLookup::new(move |email| cache.read().ok().and_then(|c| c.get(email).cloned()))
    }

    /// Encrypts and stores `password` for `email`, and uses it from now on.
    ///
    /// # Errors
    /// [`StoreError::NoSuchUser`], or when the database fails.
    pub async fn set(&self, store: &Store, email: &str, password: &str) -> Result<(), StoreError> {
        let email = email.trim().to_lowercase();
        let sealed = self.seal(&email, password)?;
        store.set_mail_credential(&email, &sealed).await?;
        if let Ok(mut c) = self.cache.write() {
            c.insert(email, password.to_owned());
        }
        Ok(())
    }

    fn seal(&self, email: &str, password: &str) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| StoreError::Corrupt {
                what: "the system random number generator failed".into(),
            })?;
        let mut buf = password.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(email)),
                &mut buf,
            )
            .map_err(|_| StoreError::Corrupt {
                what: "encrypting a mailbox password failed".into(),
            })?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    fn open(&self, email: &str, sealed: &[u8]) -> Option<String> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = ct.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad(email)), &mut buf)
            .ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }
}
