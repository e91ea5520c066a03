//! Reconciliation, device to server: what the phone user did to a message (read or unread,
//! flagged, deleted, moved to another folder) done to it in the mailbox too, when the user's
//! `reconcile` setting is on.
//!
//! The dispatcher stores each `MailChange` in the configuration database's queue before the
//! frame is acknowledged; this worker takes them oldest first, applies them through
//! [`MailAccess`](crate::messaging::mailbox::access::MailAccess), records the result on the
//! RefID's row (so the watcher does not report the change back as news; while a change is
//! being made, before its row is updated, what the watchers report about that message is not
//! told back either — a move would otherwise return to the device as a deletion) and removes
//! them from the queue. A change that fails (the mail server is away) stays queued and is
//! tried again, with a growing pause, up to [`MAX_ATTEMPTS`] times. Every change is idempotent
//! (setting a flag twice, deleting what is gone), so one applied twice after a crash does no
//! harm.
//!
//! Owns: applying the device's changes. Must not touch: sealing, the watchers, SQL beyond
//! `bramble-store`.

use std::sync::Arc;
use std::time::Duration;

use bramble_proto::schema::MailChange;
use bramble_proto::schema::mail_change::Change;
use bramble_store::MailChangeRow;
use tokio::sync::Notify;

use super::agent::{AgentError, MailAgent, locator};
use crate::messaging::mailbox::access::{Locator, Moved};

/// How often a failing change is tried before it is dropped (and logged).
pub const MAX_ATTEMPTS: i64 = 20;
/// Changes taken from the queue at a time.
const BATCH: u32 = 100;
/// The largest stored change decoded.
const MAX_CHANGE_BYTES: usize = 64 * 1024;

impl MailAgent {
    /// Applies queued changes until the server stops; `wake` is notified when the dispatcher
    /// stored a new one.
    pub async fn run_changes(self: Arc<Self>, wake: Arc<Notify>) {
        let mut pause = Duration::from_millis(200);
        loop {
            let progressed = self.apply_due().await;
            if progressed {
                pause = Duration::from_millis(200);
            }
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(pause) => {
                    if !progressed {
                        pause = (pause * 2).min(Duration::from_secs(60));
                    }
                }
            }
        }
    }

    /// One pass over the queue; `true` when it emptied it (or had nothing to do).
    async fn apply_due(&self) -> bool {
        let rows = match self.store.mail_changes_due(BATCH).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("could not read the queue of changes from devices: {e}");
                return false;
            }
        };
        for row in rows {
            match self.apply(&row).await {
                Ok(()) => {
                    if let Err(e) = self.store.finish_mail_change(row.id).await {
                        tracing::warn!("could not take a change off the queue: {e}");
                        return false;
                    }
                }
                Err(e) if row.attempts + 1 >= MAX_ATTEMPTS => {
                    tracing::error!(user = %row.email, ref_id = row.ref_id, "a change from the device could not be made in the mailbox after {MAX_ATTEMPTS} attempts and is dropped: {e}");
                    let _ = self.store.finish_mail_change(row.id).await;
                }
                Err(e) => {
                    tracing::warn!(user = %row.email, ref_id = row.ref_id, "a change from the device could not be made in the mailbox yet (tried again later): {e}");
                    let _ = self.store.retry_mail_change(row.id, &e.to_string()).await;
                    // keep the order: later changes of the same message wait behind it
                    return false;
                }
            }
        }
        true
    }

    async fn apply(&self, row: &MailChangeRow) -> Result<(), AgentError> {
        let Ok(change) = bramble_proto::decode_message::<MailChange>(&row.change, MAX_CHANGE_BYTES)
        else {
            tracing::warn!(user = %row.email, "an unreadable change in the queue is dropped");
            return Ok(());
        };
        let Some(what) = change.change else {
            return Ok(());
        };
        if !self.store.mail_settings(&row.email).await?.reconcile {
            tracing::debug!(user = %row.email, "reconciliation is off for this user: change not made in the mailbox");
            return Ok(());
        }
        let Some(item) = self.store.mail_item(&row.email, row.ref_id).await? else {
            return Ok(());
        };
        if item.state == "removed" {
            return Ok(());
        }
        let Some(loc) = locator(&item) else {
            return Ok(());
        };
        let _applying = Applying::new(self, row.ref_id);
        let email = row.email.as_str();
        match what {
            Change::Seen(seen) => {
                if self.access.set_flags(email, &loc, Some(seen), None).await? {
                    self.store
                        .set_mail_flags(row.ref_id, Some(seen), None)
                        .await?;
                } else {
                    self.store.forget_mail_item(row.ref_id).await?;
                }
            }
            Change::Flagged(flagged) => {
                if self
                    .access
                    .set_flags(email, &loc, None, Some(flagged))
                    .await?
                {
                    self.store
                        .set_mail_flags(row.ref_id, None, Some(flagged))
                        .await?;
                } else {
                    self.store.forget_mail_item(row.ref_id).await?;
                }
            }
            Change::Deleted(true) => {
                self.access.delete(email, &loc).await?;
                self.store.forget_mail_item(row.ref_id).await?;
                self.count(email, "deleted_from_device").await;
            }
            Change::Deleted(false) => {}
            Change::MovedTo(folder) => {
                match self.access.move_to(email, &loc, &folder).await? {
                    Some(Moved::To(new)) => {
                        let (key, validity, uid) = match &new {
                            Locator::Imap {
                                uid_validity, uid, ..
                            } => (
                                format!("imap:{uid_validity}:{uid}"),
                                Some(*uid_validity),
                                Some(*uid),
                            ),
                            Locator::Maildir { name, .. } => {
                                (format!("maildir:{name}"), None, None)
                            }
                        };
                        match self
                            .store
                            .move_mail_item(row.ref_id, new.folder(), &key, validity, uid)
                            .await
                        {
                            Ok(()) => {}
                            Err(bramble_store::StoreError::MailItemExists { existing, .. }) => {
                                // seen there already under another RefID: keep that one
                                tracing::debug!(user = %email, ref_id = row.ref_id, existing, "moved message already known in its new folder");
                                self.store.forget_mail_item(row.ref_id).await?;
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                    Some(Moved::Untracked) => {
                        // moved, but where it now is cannot be named: the device keeps it, the
                        // server can no longer reach it
                        self.store.forget_mail_item(row.ref_id).await?;
                    }
                    None => {
                        self.store.forget_mail_item(row.ref_id).await?;
                    }
                }
            }
        }
        tracing::debug!(user = %email, ref_id = row.ref_id, "change from the device made in the mailbox");
        Ok(())
    }
}

/// Marks a RefID as being changed by its device until dropped (see [`MailAgent::applying`]).
struct Applying<'a> {
    agent: &'a MailAgent,
    ref_id: i64,
}

impl<'a> Applying<'a> {
    fn new(agent: &'a MailAgent, ref_id: i64) -> Applying<'a> {
        agent
            .applying
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ref_id);
        Applying { agent, ref_id }
    }
}

impl Drop for Applying<'_> {
    fn drop(&mut self) {
        self.agent
            .applying
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.ref_id);
    }
}
