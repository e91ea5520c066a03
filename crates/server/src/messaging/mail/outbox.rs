//! Mail from the device (seed 002, "Email message sent from the BlackBerry smartphone", steps
//! 6-8): the dispatcher stored the device's `MailSubmit` in the outbox (once per client id) and
//! told the device ACCEPTED; this worker puts it together ([`super::compose`], with the
//! original from the mailbox for a reply or forward), hands it to the mail system
//! ([`super::transport`]), files a copy in the user's Sent folder when the user's `save_sent`
//! setting says so, updates the statistics and tells the device SENT or FAILED (with the reason
//! in the user's words).
//!
//! Exactly once. The row goes `queued` → `sending` (committed before the first SMTP command) →
//! `sent` (committed as soon as the server said 250). A row found in `sending` after a restart
//! is the one case where the mail server may have the message already: before sending it again
//! the worker looks for its Message-ID in the mailboxes of the recipients who are users of this
//! server (the service account reaches them) and, for local delivery, the delivery itself
//! recognises a repeat. Only a message whose every recipient is elsewhere can, in that window,
//! be sent twice; the log says so when it resends one.
//!
//! A transient failure (the mail server is away, 4xx) is retried with a growing pause for up to
//! [`GIVE_UP_AFTER`]; a permanent one (5xx, a bad address, a missing original) fails at once.
//!
//! Owns: the outbox's progress. Must not touch: sealing, SQL beyond `bramble-store`.

use std::sync::Arc;
use std::time::Duration;

use bramble_proto::Pin;
use bramble_proto::schema::{
    Envelope, MailKind, MailSubmit, MailSubmitted, SubmitState, envelope::Body,
};
use bramble_store::{OutboxRow, now_ms};
use tokio::sync::Notify;

use super::agent::{MailAgent, locator};
use super::compose::{self, ComposeError, Draft};
use super::transport::{SendError, Transport};

/// How long a message that cannot be sent for a passing reason is tried.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);
/// The folder a copy of sent mail goes to.
pub const SENT_FOLDER: &str = "Sent";
/// How long recipients' mailboxes are watched for a message that may have been sent before a
/// crash, before it is sent again.
const DELIVERY_GRACE: Duration = Duration::from_secs(3);
/// The most bytes of an original read for a reply or forward.
const MAX_ORIGINAL: u64 = 32 * 1024 * 1024;
/// Rows taken at a time.
const BATCH: u32 = 50;
/// The largest stored submission decoded.
const MAX_SUBMIT_BYTES: usize = 4 * 1024 * 1024;

/// Where the worker sends: the configured transport, or why there is none.
pub type TransportSetting = Result<Transport, String>;

/// How long to wait before attempt `attempts + 1` after a transient failure.
fn backoff(attempts: i64) -> Duration {
    let step = 2u64.saturating_pow(u32::try_from(attempts.clamp(0, 12)).unwrap_or(12));
    Duration::from_secs(step).min(Duration::from_secs(300))
}

impl MailAgent {
    /// Sends the outbox until the server stops; `wake` is notified when the dispatcher stored
    /// a new submission.
    pub async fn run_outbox(self: Arc<Self>, transport: Arc<TransportSetting>, wake: Arc<Notify>) {
        loop {
            let next = self.send_due(&transport).await;
            let pause = next.unwrap_or(Duration::from_secs(30));
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// One pass; returns how soon the next is needed (`None`: only when woken, or in 30 s).
    async fn send_due(&self, transport: &TransportSetting) -> Option<Duration> {
        let rows = match self.store.outbox_due(BATCH).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("could not read the outbox: {e}");
                return Some(Duration::from_secs(5));
            }
        };
        let full = rows.len() >= BATCH as usize;
        let mut processed = 0;
        let mut soonest: Option<Duration> = None;
        let now = now_ms();
        for row in rows {
            if row.state == "queued" && row.attempts > 0 {
                let wait = backoff(row.attempts);
                let ready = row.updated_at + i64::try_from(wait.as_millis()).unwrap_or(0);
                if ready > now {
                    let left = Duration::from_millis(u64::try_from(ready - now).unwrap_or(0));
                    soonest = Some(soonest.map_or(left, |s| s.min(left)));
                    continue;
                }
            }
            // `sending` means a send was cut short (the server stopped, or recording its
            // outcome failed): it may have reached the mail server
            let interrupted = row.state == "sending";
            self.send_outbox_row(transport, row, interrupted).await;
            processed += 1;
        }
        if full && processed > 0 {
            // a full batch: more may be waiting right now
            return Some(Duration::ZERO);
        }
        soonest
    }

    async fn send_outbox_row(
        &self,
        transport: &TransportSetting,
        row: OutboxRow,
        interrupted: bool,
    ) {
        let pin = Pin(u32::try_from(row.pin).unwrap_or_default());
        let Ok(submit) =
            bramble_proto::decode_message::<MailSubmit>(&row.request, MAX_SUBMIT_BYTES)
        else {
            self.fail(&row, pin, "The message could not be read by the server.")
                .await;
            return;
        };
        let message_id = row.message_id.clone().unwrap_or_default();
        let composed = match self.compose(&row, &submit, &message_id).await {
            Ok(c) => c,
            Err(e) => {
                self.fail(&row, pin, &sentence(&e.to_string())).await;
                return;
            }
        };
        if interrupted && self.already_delivered(&row, &composed.recipients).await {
            tracing::info!(user = %row.email, id = row.id, %message_id, "the message interrupted by a restart had already reached a recipient: not sent again");
            self.sent(&row, pin, &composed.raw).await;
            return;
        }
        if interrupted {
            tracing::warn!(user = %row.email, id = row.id, %message_id, "sending again a message interrupted by a restart (none of its recipients on this server has it)");
        }
        let transport = match transport {
            Ok(t) => t,
            Err(why) => {
                self.fail(&row, pin, why).await;
                return;
            }
        };
        if let Err(e) = self.store.set_outbox_state(row.id, "sending", None).await {
            tracing::warn!("could not record the outbox row as sending (tried again later): {e}");
            return;
        }
        match transport.send(&composed).await {
            Ok(sent) => {
                tracing::info!(user = %row.email, id = row.id, %message_id, reply = %sent.reply, "message from the device sent");
                self.sent(&row, pin, &composed.raw).await;
            }
            Err(SendError::Permanent(why)) => self.fail(&row, pin, &why).await,
            Err(SendError::Transient(why)) => {
                let age =
                    Duration::from_millis(u64::try_from(now_ms() - row.created_at).unwrap_or(0));
                if age >= GIVE_UP_AFTER {
                    self.fail(
                        &row,
                        pin,
                        &format!(
                            "The message could not be sent for {}: {why}",
                            humantime::format_duration(GIVE_UP_AFTER)
                        ),
                    )
                    .await;
                } else {
                    tracing::warn!(user = %row.email, id = row.id, "the message could not be sent yet (tried again later): {why}");
                    if let Err(e) = self
                        .store
                        .set_outbox_state(row.id, "queued", Some(&why))
                        .await
                    {
                        tracing::warn!("could not record the outbox row: {e}");
                    }
                }
            }
        }
    }

    /// The message as it goes out, with the original for a reply or forward.
    async fn compose(
        &self,
        row: &OutboxRow,
        submit: &MailSubmit,
        message_id: &str,
    ) -> Result<compose::Composed, ComposeError> {
        let original = if submit.kind() == MailKind::MailNew {
            None
        } else {
            self.original_of(&row.email, submit.original_ref_id).await
        };
        let name = match self.store.user(&row.email).await {
            Ok(Some(u)) => u.display_name,
            _ => None,
        };
        let draft = Draft {
            from: &row.email,
            from_name: name.as_deref(),
            submit,
            original: original.as_deref(),
            message_id,
            date_ms: row.created_at,
        };
        compose::compose(&draft)
    }

    async fn original_of(&self, email: &str, ref_id: u64) -> Option<Vec<u8>> {
        let row = self
            .store
            .mail_item(email, i64::try_from(ref_id).ok()?)
            .await
            .ok()??;
        let loc = locator(&row)?;
        match self.access.fetch(email, &loc, MAX_ORIGINAL).await {
            Ok(f) => f.map(|f| f.raw),
            Err(e) => {
                tracing::warn!(user = %email, ref_id, "could not read the original for a reply or forward: {e}");
                None
            }
        }
    }

    /// Whether a recipient who is a user of this server already has the message.
    async fn already_delivered(&self, row: &OutboxRow, recipients: &[String]) -> bool {
        let Some(id) = row.message_id.as_deref() else {
            return false;
        };
        let mut local = Vec::new();
        for r in recipients {
            if matches!(self.store.user(r).await, Ok(Some(_))) {
                local.push(r.clone());
            }
        }
        if local.is_empty() {
            return false;
        }
        let deadline = tokio::time::Instant::now() + DELIVERY_GRACE;
        loop {
            for r in &local {
                if let Ok(Some(_)) = self.access.find_message_id(r, "INBOX", id).await {
                    return true;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn sent(&self, row: &OutboxRow, pin: Pin, raw: &[u8]) {
        if let Err(e) = self.store.set_outbox_state(row.id, "sent", None).await {
            tracing::error!(user = %row.email, id = row.id, "the message was sent but that could not be recorded: {e}");
        }
        self.count(&row.email, "sent").await;
        match self.store.mail_settings(&row.email).await {
            Ok(s) if s.save_sent => {
                if let Err(e) = self.access.append(&row.email, SENT_FOLDER, raw, true).await {
                    tracing::warn!(user = %row.email, id = row.id, "the message was sent, but no copy could be put in {SENT_FOLDER}: {e}");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(user = %row.email, "could not read the mail settings: {e}"),
        }
        self.answer(row, pin, SubmitState::SubmitSent, String::new())
            .await;
    }

    async fn fail(&self, row: &OutboxRow, pin: Pin, why: &str) {
        tracing::warn!(user = %row.email, id = row.id, "a message from the device was not sent: {why}");
        if let Err(e) = self
            .store
            .set_outbox_state(row.id, "failed", Some(why))
            .await
        {
            tracing::error!("could not record the outbox row as failed: {e}");
        }
        self.count(&row.email, "send_failed").await;
        self.answer(row, pin, SubmitState::SubmitFailed, why.to_owned())
            .await;
    }

    async fn answer(&self, row: &OutboxRow, pin: Pin, state: SubmitState, message: String) {
        let env = Envelope {
            version: u32::from(bramble_proto::PROTOCOL_VERSION),
            body: Some(Body::MailSubmitted(MailSubmitted {
                client_id: u64::try_from(row.client_id).unwrap_or_default(),
                state: state as i32,
                message,
                message_id: row.message_id.clone().unwrap_or_default(),
            })),
        };
        // the device that sent it, if it is still this user's device
        let current = self.pin_of(&row.email).await.ok().flatten();
        if current != Some(pin) {
            return;
        }
        if let Err(e) = self.dispatcher.send(pin, env).await {
            tracing::warn!(user = %row.email, "could not tell the device what became of its message: {e}");
        }
    }
}

/// `text` as a sentence: capital first letter, full stop at the end.
fn sentence(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 1);
    let mut chars = text.chars();
    if let Some(c) = chars.next() {
        s.extend(c.to_uppercase());
    }
    s.push_str(chars.as_str());
    if !s.ends_with(['.', '!', '?']) {
        s.push('.');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(50), Duration::from_secs(300));
    }

    #[test]
    fn sentences() {
        assert_eq!(
            sentence("the original message is no longer in the mailbox"),
            "The original message is no longer in the mailbox."
        );
        assert_eq!(sentence("Done."), "Done.");
    }
}
