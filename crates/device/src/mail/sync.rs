//! Driving a connection for mail: send what is waiting, receive and store what arrives,
//! answer it, and wait for particular answers (more text, an attachment, a submit's fate).
//!
//! Every envelope received is handed to the policy service ([`crate::manage::handle`]) when
//! it is one of its own (IT policy, IT admin command, service books, software), to the
//! synchronization service ([`crate::organizer::handle`]) when it is one of its own, else to
//! [`MailStore::handle_incoming`], before the next [`Connection::recv`] (which acks it to the
//! relay), and its replies are sent right after. A wipe that has come due is carried out
//! before anything else ([`crate::manage::run_due`]).

use std::path::Path;
use std::time::Duration;

use bramble_proto::schema::{AttachmentRequest, Envelope, MoreRequest, envelope::Body};
use tokio::time::Instant;

use super::{
    MAX_ATTACHMENT, MailEvent, MailStore, Message, OutboxEntry, OutboxState, SavedAttachment,
};
use crate::{Connection, DeviceError};

/// What a [`sync`] (or another helper) did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncReport {
    /// Outbox messages sent to the server (not yet accepted before).
    pub submits_sent: usize,
    /// Local changes sent to the server.
    pub changes_sent: usize,
    /// Envelopes received from the server (mail or not).
    pub received: usize,
    /// Messages new on the device.
    pub new_messages: usize,
    /// Messages the server sent again (confirmed again, not stored twice).
    pub duplicates: usize,
    /// Answers with more body text.
    pub more_text: usize,
    /// Attachment pieces stored.
    pub attachment_pieces: usize,
    /// Outbox messages the server accepted.
    pub accepted: usize,
    /// Outbox messages sent by the server.
    pub sent: usize,
    /// Outbox messages that failed.
    pub failed: usize,
    /// Changes made in the mailbox, applied here.
    pub changes_received: usize,
    /// Mail messages refused as nonsense (or failed "More" and attachments).
    pub refused: usize,
    /// Everything that happened, in order.
    pub events: Vec<MailEvent>,
    /// What the policy service did (IT policy, IT admin commands, software), in order; also
    /// in `events` as [`MailEvent::Managed`].
    pub managed: Vec<crate::ManageEvent>,
    /// What the synchronization service did (organizer records, outcomes, configuration,
    /// backup), in order; also in `events` as [`MailEvent::Organizer`].
    pub organizer: Vec<crate::OrganizerEvent>,
    /// Envelopes of the synchronization service sent (batches, a backup).
    pub organizer_sent: usize,
    /// Whether the device was wiped or its organization's data removed: the mail store is
    /// closed, and the sync stopped there.
    pub ended: bool,
}

impl SyncReport {
    fn note(&mut self, event: &MailEvent) {
        match event {
            MailEvent::NewMessage { .. } => self.new_messages += 1,
            MailEvent::Duplicate { .. } => self.duplicates += 1,
            MailEvent::MoreText { .. } => self.more_text += 1,
            MailEvent::AttachmentPiece { .. } => self.attachment_pieces += 1,
            MailEvent::Submitted { state, .. } => match state {
                OutboxState::Accepted => self.accepted += 1,
                OutboxState::Sent => self.sent += 1,
                OutboxState::Failed => self.failed += 1,
                OutboxState::Queued => {}
            },
            MailEvent::Changed { .. } => self.changes_received += 1,
            MailEvent::MoreFailed { .. }
            | MailEvent::AttachmentFailed { .. }
            | MailEvent::Refused { .. } => self.refused += 1,
            MailEvent::Managed(events) => {
                self.managed.extend(events.iter().cloned());
                self.ended |= event.ends_session();
            }
            MailEvent::Organizer(events) => self.organizer.extend(events.iter().cloned()),
            MailEvent::NotMail => {}
        }
        if *event != MailEvent::NotMail {
            self.events.push(event.clone());
        }
    }
}

fn envelope(body: Body) -> Envelope {
    Envelope {
        version: u32::from(bramble_proto::PROTOCOL_VERSION),
        body: Some(body),
    }
}

/// Sends what waits on the device: the policy service's answers and reports
/// ([`crate::manage::send_pending`]), outbox messages the server has not accepted (again:
/// the server recognises their `client_id`) and local changes (each dropped from the queue
/// once sent).
///
/// # Errors
/// A connection failure (what was not sent stays queued), or when the store cannot be used.
pub async fn send_pending(
    conn: &mut Connection<'_>,
    store: &MailStore,
) -> Result<SyncReport, DeviceError> {
    let mut report = SyncReport::default();
    crate::manage::send_pending(conn).await?;
    report.organizer_sent = crate::organizer::send_pending(conn).await?;
    for submit in store.unsent().await? {
        conn.send(&envelope(Body::MailSubmit(submit))).await?;
        report.submits_sent += 1;
    }
    for pending in store.pending_changes().await? {
        conn.send(&envelope(Body::MailChange(pending.change)))
            .await?;
        store.change_sent(pending.id).await?;
        report.changes_sent += 1;
    }
    Ok(report)
}

/// Sends what waits ([`send_pending`]), then receives, stores and answers what arrives until
/// nothing has arrived for `idle`. The policy service's envelopes (IT policy, IT admin
/// commands, service books, software configurations and packages) are handled and answered
/// by [`crate::manage`] on the way (see [`SyncReport::managed`]); a wipe that is due is
/// carried out. After a wipe or the removal of the organization's data it stops at once
/// ([`SyncReport::ended`]: the mail store is closed).
///
/// # Errors
/// A connection failure (what was stored stays stored), or when the store cannot be used.
pub async fn sync(
    conn: &mut Connection<'_>,
    store: &MailStore,
    idle: Duration,
) -> Result<SyncReport, DeviceError> {
    let mut report = SyncReport::default();
    if let Some(events) = crate::manage::run_due(conn, store, crate::manage::now_ms()).await? {
        report.note(&MailEvent::Managed(events));
        return Ok(report);
    }
    let sent = send_pending(conn, store).await?;
    report.submits_sent = sent.submits_sent;
    report.changes_sent = sent.changes_sent;
    report.organizer_sent = sent.organizer_sent;
    while let Ok(item) = tokio::time::timeout(idle, conn.recv()).await {
        process(conn, store, &item?, &mut report).await?;
        if report.ended {
            break;
        }
    }
    tracing::debug!(?report, "mail synchronised");
    Ok(report)
}

/// Handles one item [`Connection::recv`] returned ([`MailStore::handle_incoming`], or the
/// policy service's [`crate::manage::handle`]: [`MailEvent::Managed`]) and sends the replies;
/// for callers that receive by themselves (call it before the next `recv`). When the event
/// [ends the session](MailEvent::ends_session) (a wipe), the store is closed: stop.
///
/// # Errors
/// A connection failure, or when the store cannot be written.
pub async fn handle_and_answer(
    conn: &mut Connection<'_>,
    store: &MailStore,
    item: &crate::Incoming,
) -> Result<MailEvent, DeviceError> {
    process(conn, store, item, &mut SyncReport::default()).await
}

/// Stores one incoming item (or has the policy service handle it) and sends its replies.
async fn process(
    conn: &mut Connection<'_>,
    store: &MailStore,
    item: &crate::Incoming,
    report: &mut SyncReport,
) -> Result<MailEvent, DeviceError> {
    if matches!(item, crate::Incoming::Envelope { .. }) {
        report.received += 1;
    }
    let managed = match crate::manage::run_due(conn, store, crate::manage::now_ms()).await? {
        Some(events) => Some(events),
        None => crate::manage::handle(conn, store, item).await?,
    };
    if let Some(events) = managed {
        let event = MailEvent::Managed(events);
        report.note(&event);
        return Ok(event);
    }
    if let Some(events) = crate::organizer::handle(conn, item).await? {
        let event = MailEvent::Organizer(events);
        report.note(&event);
        return Ok(event);
    }
    let handled = store.handle_incoming(item).await?;
    for reply in &handled.replies {
        conn.send(reply).await?;
    }
    report.note(&handled.event);
    Ok(handled.event)
}

/// The error a waiting helper ends with when the device's data went while it waited.
fn ended(event: &MailEvent) -> DeviceError {
    let wiped = matches!(event, MailEvent::Managed(e) if e.contains(&crate::ManageEvent::Wiped));
    if wiped {
        DeviceError::Wiped("by your administrator".into())
    } else {
        DeviceError::OrganizationRemoved
    }
}

/// What a waiting helper makes of an event.
enum Step<T> {
    /// Not what it waits for.
    Other,
    /// Part of the answer: wait on (the time limit starts again).
    Progress,
    /// The answer.
    Done(T),
}

/// Receives and handles everything until `pick` says done; `timeout` without anything that
/// counts is [`DeviceError::NoAnswer`].
async fn wait_for<T>(
    conn: &mut Connection<'_>,
    store: &MailStore,
    timeout: Duration,
    report: &mut SyncReport,
    mut pick: impl FnMut(&MailEvent) -> Result<Step<T>, DeviceError>,
) -> Result<T, DeviceError> {
    let mut deadline = Instant::now() + timeout;
    loop {
        let item = tokio::time::timeout_at(deadline, conn.recv())
            .await
            .map_err(|_| DeviceError::NoAnswer(timeout))??;
        let event = process(conn, store, &item, report).await?;
        if event.ends_session() {
            return Err(ended(&event));
        }
        match pick(&event)? {
            Step::Other => {}
            Step::Progress => deadline = Instant::now() + timeout,
            Step::Done(v) => return Ok(v),
        }
    }
}

/// "More": asks the server for the next part of a message's text (or, with `all`, the rest
/// of it), stores it and returns the message. A message with nothing more to fetch is
/// returned without asking. Everything else arriving meanwhile is handled too.
///
/// # Errors
/// [`DeviceError::MessageNotFound`], [`DeviceError::MoreFailed`] (the server's reason),
/// [`DeviceError::NoAnswer`] after `timeout` without an answer, or a connection failure.
pub async fn request_more(
    conn: &mut Connection<'_>,
    store: &MailStore,
    ref_id: u64,
    all: bool,
    timeout: Duration,
) -> Result<Message, DeviceError> {
    let msg = store.message(ref_id).await?;
    if !msg.more {
        return Ok(msg);
    }
    let request = MoreRequest {
        ref_id,
        offset: msg.text.len() as u64,
        all,
    };
    conn.send(&envelope(Body::MoreRequest(request))).await?;
    let mut report = SyncReport::default();
    wait_for(conn, store, timeout, &mut report, |e| match e {
        MailEvent::MoreText {
            ref_id: r,
            complete,
            ..
        } if *r == ref_id => Ok(if all && !complete {
            Step::Progress
        } else {
            Step::Done(())
        }),
        MailEvent::MoreFailed { ref_id: r, error } if *r == ref_id => {
            Err(DeviceError::MoreFailed(error.clone()))
        }
        _ => Ok(Step::Other),
    })
    .await?;
    store.message(ref_id).await
}

/// Downloads attachment `index` of `ref_id` and writes it to `out`. The time limit counts
/// from the request, and again from each piece. Everything else arriving meanwhile is
/// handled too.
///
/// # Errors
/// [`DeviceError::MessageNotFound`], [`DeviceError::NoSuchAttachment`],
/// [`DeviceError::AttachmentTooLarge`], [`DeviceError::AttachmentFailed`] (the server's
/// reason, or pieces that did not fit), [`DeviceError::NoAnswer`], a file error, or a
/// connection failure.
pub async fn fetch_attachment(
    conn: &mut Connection<'_>,
    store: &MailStore,
    ref_id: u64,
    index: u32,
    out: &Path,
    timeout: Duration,
) -> Result<SavedAttachment, DeviceError> {
    let msg = store.message(ref_id).await?;
    let info = msg
        .attachments
        .iter()
        .find(|a| a.index == index)
        .ok_or(DeviceError::NoSuchAttachment { ref_id, index })?;
    if info.size > MAX_ATTACHMENT {
        return Err(DeviceError::AttachmentTooLarge {
            size: info.size,
            max: MAX_ATTACHMENT,
        });
    }
    if let Some(max) = conn.device().max_attachment_bytes()
        && info.size > max
    {
        return Err(DeviceError::AttachmentForbidden {
            size: info.size,
            max,
        });
    }
    if !store.attachment_ready(ref_id, index).await? {
        conn.send(&envelope(Body::AttachmentRequest(AttachmentRequest {
            ref_id,
            index,
        })))
        .await?;
        let mut report = SyncReport::default();
        wait_for(conn, store, timeout, &mut report, |e| match e {
            MailEvent::AttachmentPiece {
                ref_id: r,
                index: i,
                complete,
                ..
            } if *r == ref_id && *i == index => Ok(if *complete {
                Step::Done(())
            } else {
                Step::Progress
            }),
            MailEvent::AttachmentFailed {
                ref_id: r,
                index: i,
                error,
            } if *r == ref_id && *i == index => Err(DeviceError::AttachmentFailed(error.clone())),
            _ => Ok(Step::Other),
        })
        .await?;
    }
    store.save_attachment(ref_id, index, out).await
}

/// Sends what waits ([`send_pending`]) and handles what arrives until outbox entry
/// `client_id` is sent or failed, or `wait` has passed; calls `progress` each time its state
/// changes. Returns the entry as it then stands (still queued or accepted when time ran out).
///
/// # Errors
/// A connection failure, or when the store cannot be used; an unknown `client_id` is
/// [`DeviceError::BadDraft`].
pub async fn wait_for_submit(
    conn: &mut Connection<'_>,
    store: &MailStore,
    client_id: u64,
    wait: Duration,
    mut progress: impl FnMut(&OutboxEntry),
) -> Result<OutboxEntry, DeviceError> {
    let missing =
        || DeviceError::BadDraft(format!("there is no message {client_id} in the outbox"));
    let mut entry = store.outbox_entry(client_id).await?.ok_or_else(missing)?;
    send_pending(conn, store).await?;
    let deadline = Instant::now() + wait;
    let mut report = SyncReport::default();
    while !entry.state.is_final() {
        let Ok(item) = tokio::time::timeout_at(deadline, conn.recv()).await else {
            break;
        };
        let event = process(conn, store, &item?, &mut report).await?;
        if event.ends_session() {
            return Err(ended(&event));
        }
        if matches!(event, MailEvent::Submitted { client_id: c, .. } if c == client_id) {
            let now = store.outbox_entry(client_id).await?.ok_or_else(missing)?;
            if now.state != entry.state {
                progress(&now);
            }
            entry = now;
        }
    }
    Ok(entry)
}

/// Sends what waits ([`send_pending`]: the organizer's changes among it) and handles what
/// arrives until every organizer batch the device sent is answered, or `wait` has passed.
/// The report's [`SyncReport::organizer`] says what became of the changes; whatever did
/// not get an answer in time is sent again on the next connection.
///
/// # Errors
/// A connection failure, or when a store cannot be used.
pub async fn wait_for_organizer(
    conn: &mut Connection<'_>,
    store: &MailStore,
    wait: Duration,
) -> Result<SyncReport, DeviceError> {
    let mut report = SyncReport::default();
    let sent = send_pending(conn, store).await?;
    report.organizer_sent = sent.organizer_sent;
    let organizer = conn.device().organizer().await?;
    let deadline = Instant::now() + wait;
    while !organizer.pending_batches().await?.is_empty() {
        let Ok(item) = tokio::time::timeout_at(deadline, conn.recv()).await else {
            break;
        };
        let event = process(conn, store, &item?, &mut report).await?;
        if event.ends_session() {
            report.ended = true;
            break;
        }
    }
    Ok(report)
}
