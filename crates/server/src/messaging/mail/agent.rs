//! The forwarding agent: seed 002's "Email message sent to the BlackBerry smartphone", steps
//! 2-6. The mailbox watchers offer it every new message ([`MailSink`]); it reads the message
//! into what the device sees ([`super::content`]), applies the global filters and then the
//! user's ([`super::filter`]), gives it a RefID in the configuration database, updates the
//! statistics and hands it to the dispatcher for the user's device. The device confirms
//! delivery (`MailReceived`, recorded by the dispatcher); what is not confirmed within
//! [`AgentConfig::resend_after`] (BES: four hours) is sent again, and so is what the relay never
//! reported queued or delivered (a frame lost with a dropped link, or a server that stopped
//! before the report came).
//!
//! Durability: an offered message returns only once its RefID row is committed, so the watcher
//! moves its cursor past it only then; a message offered twice (after a crash) meets its row and
//! keeps its RefID, and is sent again only if it was never relayed. The device shows each RefID
//! once however often it arrives.
//!
//! Statistics (per user and `global`, BES's counters): `forwarded` (first sends), `filtered`
//! (a filter said do not forward), `resent`, `expired` (the relay gave up on a frame),
//! `delivered` (confirmed by the device, counted by the dispatcher), `sent` and `send_failed`
//! (mail from the device).
//!
//! Owns: what is forwarded, RefIDs, resends. Must not touch: sealing (the dispatcher's), the
//! mailbox protocol (the watchers'), SQL (only `bramble-store`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bramble_proto::Pin;
use bramble_proto::schema::mail_change::Change;
use bramble_proto::schema::{Envelope, MailChange, MailFlags, MailItem, envelope::Body};
use bramble_store::{FilterScope, MailItemRow, NewMailItem, Store, UserStatus, now_ms};
use prost::Message;
use tokio::sync::broadcast;

use super::{content, filter};
use crate::ServerEvent;
use crate::dispatcher::Dispatcher;
use crate::messaging::mailbox::access::{Locator, MailAccess};
use crate::messaging::mailbox::{KnownMail, MailSink, MailboxChange, NewMail, Place, SinkFuture};

/// The most items resent in one round.
const RESEND_BATCH: u32 = 500;
/// The largest stored item decoded (our own bytes, bounded all the same).
const MAX_ITEM_BYTES: usize = 1024 * 1024;

/// Settings of the forwarding agent (from `[server.mail]`).
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Send an item again when the device has not confirmed it within this long (BES: 4 h).
    pub resend_after: Duration,
    /// Send an item again when the relay has not reported it queued or delivered within this
    /// long (the frame was lost with the link).
    pub unrelayed_after: Duration,
    /// How often both are checked.
    pub check_every: Duration,
}

impl Default for AgentConfig {
    fn default() -> AgentConfig {
        AgentConfig {
            resend_after: Duration::from_secs(4 * 3600),
            unrelayed_after: Duration::from_secs(60),
            check_every: Duration::from_secs(30),
        }
    }
}

/// Why a message could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration database failed.
    #[error(transparent)]
    Store(#[from] bramble_store::StoreError),
    /// The dispatcher could not send.
    #[error(transparent)]
    Dispatch(#[from] crate::dispatcher::DispatchError),
    /// The message could not be read (a bug: content never fails).
    #[error("the message could not be read: {0}")]
    Content(String),
    /// The mailbox could not be reached or refused.
    #[error(transparent)]
    Access(#[from] crate::messaging::mailbox::access::AccessError),
}

/// Where the message of a RefID row is in the mailbox.
pub(super) fn locator(row: &MailItemRow) -> Option<Locator> {
    if let Some(rest) = row.source_key.strip_prefix("imap:") {
        let (v, u) = rest.split_once(':')?;
        return Some(Locator::Imap {
            folder: row.folder.clone(),
            uid_validity: v.parse().ok()?,
            uid: u.parse().ok()?,
        });
    }
    let name = row.source_key.strip_prefix("maildir:")?;
    Some(Locator::Maildir {
        folder: row.folder.clone(),
        name: name.to_owned(),
    })
}

/// A body text read for "More": (user, RefID) and the text.
pub(super) type TextEntry = ((String, i64), Arc<String>);

/// The forwarding agent. Cheap to share (`Arc`).
pub struct MailAgent {
    pub(super) store: Store,
    pub(super) dispatcher: Dispatcher,
    pub(super) events: broadcast::Sender<ServerEvent>,
    pub(super) cfg: AgentConfig,
    /// The users' mailboxes, for More, attachments, originals, changes and Sent copies.
    pub(super) access: MailAccess,
    /// PIN → user, for the relay's delivery reports.
    pins: Mutex<HashMap<Pin, String>>,
    /// Body texts recently read for "More", newest last.
    pub(super) texts: Mutex<Vec<TextEntry>>,
    /// RefIDs whose change from the device is being made in the mailbox right now: what the
    /// watchers report about them meanwhile is the device's own change on its way (see
    /// [`super::changes`]), not news for the device.
    pub(super) applying: Mutex<HashSet<i64>>,
}

impl std::fmt::Debug for MailAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailAgent")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl MailAgent {
    /// An agent sending through `dispatcher`.
    pub fn new(
        store: Store,
        dispatcher: Dispatcher,
        events: broadcast::Sender<ServerEvent>,
        cfg: AgentConfig,
        access: MailAccess,
    ) -> MailAgent {
        MailAgent {
            store,
            dispatcher,
            events,
            cfg,
            access,
            pins: Mutex::new(HashMap::new()),
            texts: Mutex::new(Vec::new()),
            applying: Mutex::new(HashSet::new()),
        }
    }

    /// The device of `email` as the dispatcher addresses it.
    pub(super) async fn pin_of(&self, email: &str) -> Result<Option<Pin>, AgentError> {
        Ok(self.store.device_for_user(email).await?.map(|d| Pin(d.pin)))
    }

    /// Whether `email`'s mail goes to a device now: a device is activated and has its service
    /// books (BES: mail flows from "Services Received" on), and push is on for the user.
    pub async fn takes_mail(&self, email: &str) -> Result<bool, AgentError> {
        let Some(user) = self.store.user(email).await? else {
            return Ok(false);
        };
        if !matches!(
            user.status,
            UserStatus::ServicesReceived | UserStatus::Completed
        ) {
            return Ok(false);
        }
        if self.store.device_for_user(email).await?.is_none() {
            return Ok(false);
        }
        Ok(self.store.mail_settings(email).await?.push)
    }

    /// A new message: filtered, recorded under a RefID (durable when this returns), sent.
    /// Sending failures are logged, not returned: the item is recorded and the resend rounds
    /// send it.
    ///
    /// # Errors
    /// When the item could not be recorded.
    pub async fn forward(&self, mail: NewMail) -> Result<(), AgentError> {
        let email = mail.mailbox.clone();
        if !self.takes_mail(&email).await? {
            return Ok(());
        }
        let source_key = mail.place.source_key();
        if let Some(row) = self
            .store
            .mail_item_by_source(&email, &mail.folder, &source_key)
            .await?
        {
            // offered again after a restart: it has its RefID; send it if it never went out
            if row.sent_at.is_none() {
                self.send_row(&row).await;
            }
            return Ok(());
        }
        let NewMail {
            folder,
            place,
            size,
            raw,
            seen,
            flagged,
            ..
        } = mail;
        let summary = tokio::task::spawn_blocking(move || content::summarize(&raw, size))
            .await
            .map_err(|e| AgentError::Content(e.to_string()))?;
        let mut item = summary.item;
        let headers = item.headers.clone().unwrap_or_default();
        let global = self.store.list_filters(&FilterScope::Global).await?;
        let own = self
            .store
            .list_filters(&FilterScope::User(email.clone()))
            .await?;
        let decision = filter::decide(&global, &own, &headers);
        if !decision.forwards() {
            tracing::debug!(user = %email, filter = ?decision.filter, "not forwarded: a filter says so");
            self.count(&email, "filtered").await;
            return Ok(());
        }
        item.folder.clone_from(&folder);
        item.priority = decision.priority();
        item.flags = Some(MailFlags { seen, flagged });
        let (uid_validity, uid) = match &place {
            Place::Imap { uid_validity, uid } => (Some(*uid_validity), Some(*uid)),
            Place::Maildir { .. } => (None, None),
        };
        let new = NewMailItem {
            email: email.clone(),
            folder,
            source_key,
            uid_validity,
            uid,
            message_id: summary.message_id,
            item: item.encode_to_vec(),
            seen,
            flagged,
        };
        let (ref_id, _) = self.store.add_mail_item(&new).await?;
        tracing::debug!(user = %email, ref_id, "new mail recorded");
        if let Some(row) = self.store.mail_item(&email, ref_id).await? {
            self.send_row(&row).await;
        }
        Ok(())
    }

    /// Sends a recorded item to the user's device and records the send; failures are logged
    /// (the resend rounds try again).
    async fn send_row(&self, row: &MailItemRow) {
        if let Err(e) = self.try_send_row(row).await {
            tracing::warn!(user = %row.email, ref_id = row.ref_id, "mail not sent to the device yet (it is sent again later): {e}");
        }
    }

    async fn try_send_row(&self, row: &MailItemRow) -> Result<(), AgentError> {
        let Some(device) = self.store.device_for_user(&row.email).await? else {
            return Ok(());
        };
        let mut item: MailItem = bramble_proto::decode_message(&row.item, MAX_ITEM_BYTES)
            .map_err(|e| AgentError::Content(format!("stored item {}: {e}", row.ref_id)))?;
        item.ref_id = u64::try_from(row.ref_id).unwrap_or_default();
        item.resent = u32::try_from(row.sent_count).unwrap_or(u32::MAX);
        let pin = Pin(device.pin);
        self.pins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pin, row.email.clone());
        let env = Envelope {
            version: u32::from(bramble_proto::PROTOCOL_VERSION),
            body: Some(Body::MailItem(Box::new(item))),
        };
        let seq = self.dispatcher.send(pin, env).await?;
        self.store.mark_mail_sent(row.ref_id, seq).await?;
        self.count(
            &row.email,
            if row.sent_count == 0 {
                "forwarded"
            } else {
                "resent"
            },
        )
        .await;
        let _ = self.events.send(ServerEvent::MailForwarded {
            email: row.email.clone(),
            ref_id: row.ref_id,
            resent: row.sent_count > 0,
        });
        Ok(())
    }

    /// Runs the resend rounds and takes the relay's delivery reports, until the server stops.
    /// At start it sends what never reached the relay.
    pub async fn run(self: Arc<Self>) {
        let mut events = self.events.subscribe();
        self.resend_unrelayed(None).await;
        let mut tick = tokio::time::interval(self.cfg.check_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Ok(ServerEvent::Delivery { pin, seq, status }) => self.delivery(pin, seq, status).await,
                    Ok(ServerEvent::RelayUp) => {
                        // frames in flight when the link dropped are gone: send them again
                        self.resend_unrelayed(Some(Duration::from_secs(1))).await;
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!("the forwarding agent missed {n} server events; unreported sends are retried by the resend rounds");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    self.resend_unrelayed(Some(self.cfg.unrelayed_after)).await;
                    self.resend_unconfirmed().await;
                }
            }
        }
    }

    async fn delivery(&self, pin: Pin, seq: u64, status: &'static str) {
        let email = self
            .pins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&pin)
            .cloned();
        let email = match email {
            Some(e) => e,
            None => match self.store.device_by_pin(pin.0).await {
                Ok(Some(d)) => {
                    // Remembered, so the next report for this device needs no lookup.
                    self.pins
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(pin, d.email.clone());
                    d.email
                }
                _ => return,
            },
        };
        match status {
            "queued" | "delivered" => {
                if let Err(e) = self.store.mark_mail_relayed(&email, seq).await {
                    tracing::warn!(user = %email, seq, "could not record a delivery report: {e}");
                }
            }
            "expired" => self.count(&email, "expired").await,
            _ => {}
        }
    }

    /// Sends again what was never reported by the relay; `older_than`: only sends at least
    /// that old (`None`: all, at start).
    async fn resend_unrelayed(&self, older_than: Option<Duration>) {
        let rows = match self.store.mail_items_unrelayed(RESEND_BATCH).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("could not list unsent mail: {e}");
                return;
            }
        };
        let cutoff = older_than.map(|d| now_ms() - i64::try_from(d.as_millis()).unwrap_or(0));
        for row in rows {
            let due = match (cutoff, row.sent_at) {
                (None, _) | (_, None) => true,
                (Some(c), Some(at)) => at <= c,
            };
            if due {
                self.send_row(&row).await;
            }
        }
    }

    /// Sends again what the device has not confirmed within [`AgentConfig::resend_after`].
    async fn resend_unconfirmed(&self) {
        let before = now_ms() - i64::try_from(self.cfg.resend_after.as_millis()).unwrap_or(0);
        match self.store.mail_items_due(before, RESEND_BATCH).await {
            Ok(rows) => {
                for row in rows {
                    self.send_row(&row).await;
                }
            }
            Err(e) => tracing::warn!("could not list unconfirmed mail: {e}"),
        }
    }

    /// Counts one `name` for the user and for the whole server, in one commit.
    pub(super) async fn count(&self, email: &str, name: &str) {
        if let Err(e) = self
            .store
            .bump_stats(&[("global", name, 1), (email, name, 1)])
            .await
        {
            tracing::warn!("could not update statistics: {e}");
        }
    }
}

impl MailSink for MailAgent {
    fn wants<'a>(&'a self, email: &'a str) -> SinkFuture<'a, bool> {
        Box::pin(async move { self.takes_mail(email).await.unwrap_or(true) })
    }

    fn cursor<'a>(&'a self, email: &'a str, folder: &'a str) -> SinkFuture<'a, Option<(u32, u32)>> {
        Box::pin(async move {
            match self.store.mail_cursor(email, folder).await {
                Ok(c) => c.map(|c| (c.uid_validity, c.next_uid)),
                Err(e) => {
                    tracing::warn!(user = %email, "could not read where push mail stopped: {e}");
                    None
                }
            }
        })
    }

    fn advance<'a>(
        &'a self,
        email: &'a str,
        folder: &'a str,
        uid_validity: u32,
        next_uid: u32,
    ) -> SinkFuture<'a, ()> {
        Box::pin(async move {
            if let Err(e) = self
                .store
                .set_mail_cursor(email, folder, uid_validity, next_uid)
                .await
            {
                tracing::warn!(user = %email, "could not record where push mail got to (messages may be looked at again): {e}");
            }
        })
    }

    fn offer(&self, mail: NewMail) -> SinkFuture<'_, Result<(), String>> {
        Box::pin(async move { self.forward(mail).await.map_err(|e| e.to_string()) })
    }

    fn known<'a>(
        &'a self,
        email: &'a str,
        folder: &'a str,
        limit: u32,
    ) -> SinkFuture<'a, Vec<KnownMail>> {
        Box::pin(async move {
            match self.store.mail_items_in_folder(email, folder, limit).await {
                Ok(rows) => rows
                    .iter()
                    .filter_map(|r| {
                        let place = match locator(r)? {
                            Locator::Imap {
                                uid_validity, uid, ..
                            } => Place::Imap { uid_validity, uid },
                            Locator::Maildir { name, .. } => Place::Maildir { name },
                        };
                        Some(KnownMail {
                            place,
                            seen: r.seen,
                            flagged: r.flagged,
                        })
                    })
                    .collect(),
                Err(e) => {
                    tracing::warn!(user = %email, "could not list forwarded mail: {e}");
                    Vec::new()
                }
            }
        })
    }

    fn changed(&self, change: MailboxChange) -> SinkFuture<'_, ()> {
        Box::pin(async move {
            if let Err(e) = self.mailbox_changed(change).await {
                tracing::warn!("a change in a mailbox could not be passed on to the device: {e}");
            }
        })
    }
}

impl MailAgent {
    /// Reconciliation, server to device: a message the device holds was read, flagged,
    /// deleted or moved away in the mailbox.
    async fn mailbox_changed(&self, change: MailboxChange) -> Result<(), AgentError> {
        let (email, folder, place) = match &change {
            MailboxChange::Flags {
                mailbox,
                folder,
                place,
                ..
            }
            | MailboxChange::Gone {
                mailbox,
                folder,
                place,
            } => (mailbox, folder, place),
        };
        let Some(row) = self
            .store
            .mail_item_by_source(email, folder, &place.source_key())
            .await?
        else {
            return Ok(());
        };
        if row.state == "removed" {
            // deleted or moved away before: the device was told then
            return Ok(());
        }
        if self
            .applying
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&row.ref_id)
        {
            // the device's own change, made in the mailbox before its row is updated (a move
            // would otherwise come back to the device as a deletion)
            tracing::debug!(user = %email, ref_id = row.ref_id, "changed in the mailbox by the device itself: not told back");
            return Ok(());
        }
        let ref_id = u64::try_from(row.ref_id).unwrap_or_default();
        let mut tell = Vec::new();
        match change {
            MailboxChange::Flags { seen, flagged, .. } => {
                if !self
                    .store
                    .set_mail_flags(row.ref_id, Some(seen), Some(flagged))
                    .await?
                {
                    return Ok(());
                }
                if seen != row.seen {
                    tell.push(Change::Seen(seen));
                }
                if flagged != row.flagged {
                    tell.push(Change::Flagged(flagged));
                }
            }
            MailboxChange::Gone { .. } => {
                if !self.store.forget_mail_item(row.ref_id).await? {
                    return Ok(());
                }
                tell.push(Change::Deleted(true));
            }
        }
        if !self.store.mail_settings(email).await?.reconcile {
            return Ok(());
        }
        let Some(pin) = self.pin_of(email).await? else {
            return Ok(());
        };
        for change in tell {
            tracing::debug!(user = %email, ref_id, ?change, "changed in the mailbox: telling the device");
            let env = Envelope {
                version: u32::from(bramble_proto::PROTOCOL_VERSION),
                body: Some(Body::MailChange(MailChange {
                    ref_id,
                    change: Some(change),
                })),
            };
            self.dispatcher.send(pin, env).await?;
        }
        Ok(())
    }
}
