//! Per-user mailbox passwords, for mail servers where no service account reaches every
//! mailbox. The administrator gives each user's password once; the server keeps it encrypted
//! in the configuration database (AES-256-GCM under a key among the server's secrets, the
//! user's address as associated data) and decrypted only in memory, for the IMAP login.
//!
//! Owns: that key and the in-memory table. Must not touch: mailboxes (the watchers log in).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bramble_store::{Store, StoreError};

use crate::secret_box::SecretBox;

use super::mailbox::PasswordLookup;

/// The name of the encryption key among the server's secrets.
pub const CREDENTIAL_KEY: &str = "mail_credential_key";
const AAD_CONTEXT: &[u8] = b"bramble/v1/mail-credential/";

/// The users' mailbox passwords.
pub struct Credentials {
    key: SecretBox,
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
        let key = SecretBox::load(store, CREDENTIAL_KEY, "the mail credential key").await?;
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

    /// After a user's address changed from `old` to `new` in the store: the password kept for
    /// them is sealed again to the new address (it is bound to the address it was sealed
    /// for). Nothing happens for a user with no password kept.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn readdress(&self, store: &Store, old: &str, new: &str) -> Result<(), StoreError> {
        let old = old.trim().to_lowercase();
        let password = self.cache.write().ok().and_then(|mut c| c.remove(&old));
        match password {
            Some(pw) => self.set(store, new, &pw).await,
            None => Ok(()),
        }
    }

    fn seal(&self, email: &str, password: &str) -> Result<Vec<u8>, StoreError> {
        self.key.seal(&aad(email), password.as_bytes())
    }

    fn open(&self, email: &str, sealed: &[u8]) -> Option<String> {
        String::from_utf8(self.key.open(&aad(email), sealed)?).ok()
    }
}
