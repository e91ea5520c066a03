//! What changing a user's address moves besides the store: the mailbox watcher (it logs in
//! as the address), a mailbox password kept for them (sealed to the address), the organizer
//! synchronization (it works per address), and the phone's service books (they name it).
//! One path for an administrator's change (`PATCH /users/{email}`) and the directory's
//! (its synchronization keeps addresses in step with the entries).
//!
//! Owns: the order of those steps. Must not touch: SQL (only `bramble-store`), HTTP.

use std::sync::Arc;

use bramble_store::{NewAuditEntry, Store, StoreError, User};

use crate::messaging::credentials::Credentials;
use crate::messaging::mailbox::Watchers;
use crate::policy::PolicyHandle;
use crate::sync::SyncHandle;

/// The parts of the running server that hold a user by address.
#[derive(Debug, Clone)]
pub struct UserServices {
    /// The configuration database.
    pub store: Store,
    /// The mailbox watchers.
    pub watchers: Option<Arc<Watchers>>,
    /// Mailbox passwords kept per user.
    pub credentials: Option<Arc<Credentials>>,
    /// The synchronization service.
    pub sync: Option<SyncHandle>,
    /// The policy service (it sends the service books).
    pub policy: Option<PolicyHandle>,
}

impl UserServices {
    /// Gives the user `email` the address `new_email`, and moves what the running server
    /// holds by address: the mailbox is watched under the new one, a kept mailbox password
    /// sealed to it, the organizer synchronized under it, and a phone that is activated gets
    /// its service books again (they carry the address). `by` is the administrator, for the
    /// command's record (`None`: the directory synchronization).
    ///
    /// # Errors
    /// As [`Store::change_user_email`]; nothing is changed then.
    pub async fn change_email(
        &self,
        email: &str,
        new_email: &str,
        by: Option<&str>,
    ) -> Result<User, StoreError> {
        let Some(before) = self.store.user(email).await? else {
            return Err(StoreError::NoSuchUser {
                email: email.trim().to_lowercase(),
            });
        };
        let user = self
            .store
            .change_user_email(&before.email, new_email)
            .await?;
        if user.email == before.email {
            return Ok(user);
        }
        tracing::info!(user = %user.email, was = %before.email, "user's address changed");
        if let Some(c) = &self.credentials {
            c.readdress(&self.store, &before.email, &user.email).await?;
        }
        if let Some(w) = &self.watchers {
            w.unwatch(&before.email).await;
            if let Err(e) = w.watch(&user.email) {
                tracing::warn!(user = %user.email, "cannot watch the mailbox under its new address: {e}");
            }
        }
        if let Some(s) = &self.sync {
            s.settings_changed(Some(&user.email));
        }
        if let Some(device) = self.store.device_for_user(&user.email).await? {
            self.store
                .add_command(
                    &user.email,
                    Some(device.pin),
                    "resend-service-books",
                    "{}",
                    by,
                )
                .await?;
            if let Some(p) = &self.policy {
                p.wake();
            }
        }
        Ok(user)
    }

    /// Writes an entry of the audit log for something the server did by itself (`actor`
    /// names the part of it, e.g. "directory synchronization"); a failure is logged, not
    /// returned, as the change itself is done.
    pub async fn audit_own(&self, actor: &str, action: &str, target: &str, detail: String) {
        let entry = NewAuditEntry {
            actor: actor.to_owned(),
            source: None,
            action: action.to_owned(),
            target: Some(target.to_owned()),
            detail: Some(detail),
            result: "success".to_owned(),
            status: 200,
        };
        if let Err(e) = self.store.audit(&entry).await {
            tracing::warn!(%actor, %action, %target, "cannot write the audit log: {e}");
        }
    }
}

impl super::AdminState {
    /// The parts of the running server that hold users by address.
    pub fn user_services(&self) -> UserServices {
        UserServices {
            store: self.store.clone(),
            watchers: self.watchers.clone(),
            credentials: self.credentials.clone(),
            sync: self.sync.clone(),
            policy: self.policy.clone(),
        }
    }
}
