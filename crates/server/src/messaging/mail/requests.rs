//! What a device asks of a message it holds (seed 002: the messaging agent "downloads
//! attachments from the messaging server that have been requested", and "More"): the next part
//! of its text, or one of its attachments in its original form, read from the mailbox by the
//! RefID's map entry. Each request runs in a task of its own (at most [`MAX_IN_FLIGHT`] at
//! once), so a slow mailbox does not hold up the others; the answers go back through the
//! dispatcher.
//!
//! A request that cannot be answered gets an answer that says why, in the phone user's words
//! (the message is gone from the mailbox, there is no such attachment, the mail server cannot
//! be reached); the device shows it.
//!
//! Owns: reading a forwarded message again for the device. Must not touch: sealing, SQL beyond
//! `bramble-store`, the watchers.

use std::sync::Arc;

use bramble_proto::schema::{
    AttachmentChunk, AttachmentRequest, Envelope, MailMore, MoreRequest, envelope::Body,
};
use tokio::sync::{Semaphore, mpsc};

use super::agent::{AgentError, MailAgent, locator};
use super::content;
use crate::dispatcher::MailRequest;

/// Requests answered at once, at most.
pub const MAX_IN_FLIGHT: usize = 8;
/// The most bytes of a message read for "More" or an attachment.
pub const MAX_FETCH_BYTES: u64 = 64 * 1024 * 1024;
/// The size of one attachment piece.
pub const CHUNK_BYTES: usize = 256 * 1024;
/// Body texts kept for "More" (the device asks for a long message part by part).
const TEXT_CACHE: usize = 32;

fn envelope(body: Body) -> Envelope {
    Envelope {
        version: u32::from(bramble_proto::PROTOCOL_VERSION),
        body: Some(body),
    }
}

impl MailAgent {
    /// Answers the dispatcher's mail requests until the channel closes.
    pub async fn serve_requests(self: Arc<Self>, mut rx: mpsc::Receiver<MailRequest>) {
        let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        while let Some(req) = rx.recv().await {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let agent = self.clone();
            tokio::spawn(async move {
                agent.request(req).await;
                drop(permit);
            });
        }
    }

    async fn request(&self, req: MailRequest) {
        let MailRequest {
            pin, email, env, ..
        } = req;
        let answers = match env.body {
            Some(Body::MoreRequest(m)) => vec![self.more(&email, &m).await],
            Some(Body::AttachmentRequest(a)) => self.attachment(&email, &a).await,
            _ => Vec::new(),
        };
        for answer in answers {
            if let Err(e) = self.dispatcher.send(pin, answer).await {
                tracing::warn!(%pin, user = %email, "could not answer the device (it asks again): {e}");
                return;
            }
        }
    }

    /// The message's bytes from the mailbox, or the sentence the device shows instead.
    async fn original(&self, email: &str, ref_id: u64) -> Result<Vec<u8>, String> {
        let gone = || "This message is no longer in your mailbox.".to_owned();
        let row = i64::try_from(ref_id)
            .ok()
            .map(|id| self.store.mail_item(email, id));
        let row = match row {
            Some(fut) => fut.await.map_err(|e| unavailable(&e.into()))?,
            None => None,
        };
        let Some(row) = row else {
            return Err(gone());
        };
        let Some(loc) = locator(&row) else {
            return Err(gone());
        };
        match self.access.fetch(email, &loc, MAX_FETCH_BYTES).await {
            Ok(Some(f)) => Ok(f.raw),
            Ok(None) => Err(gone()),
            Err(e) => Err(unavailable(&e.into())),
        }
    }

    /// "More": the next part of the body text (or the rest, up to a limit).
    async fn more(&self, email: &str, m: &MoreRequest) -> Envelope {
        let answer = |text: String, total: u64, error: String| {
            envelope(Body::MailMore(MailMore {
                ref_id: m.ref_id,
                offset: m.offset,
                text,
                text_total: total,
                error,
            }))
        };
        let text = match self.body_text(email, m.ref_id).await {
            Ok(t) => t,
            Err(error) => return answer(String::new(), 0, error),
        };
        let (part, total) = content::more(&text, m.offset, m.all);
        answer(part, total, String::new())
    }

    async fn body_text(&self, email: &str, ref_id: u64) -> Result<Arc<String>, String> {
        let key = (email.to_owned(), i64::try_from(ref_id).unwrap_or(-1));
        if let Some(t) = self
            .texts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, t)| t.clone())
        {
            return Ok(t);
        }
        let raw = self.original(email, ref_id).await?;
        let text = tokio::task::spawn_blocking(move || content::body_text(&raw))
            .await
            .map_err(|_| "The server could not read this message.".to_owned())?;
        let text = Arc::new(text);
        let mut cache = self.texts.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|(k, _)| *k != key);
        if cache.len() >= TEXT_CACHE {
            cache.remove(0);
        }
        cache.push((key, text.clone()));
        Ok(text)
    }

    /// An attachment in its original form, in pieces of [`CHUNK_BYTES`].
    async fn attachment(&self, email: &str, a: &AttachmentRequest) -> Vec<Envelope> {
        let failed = |error: String| {
            vec![envelope(Body::AttachmentChunk(AttachmentChunk {
                ref_id: a.ref_id,
                index: a.index,
                error,
                ..Default::default()
            }))]
        };
        let raw = match self.original(email, a.ref_id).await {
            Ok(r) => r,
            Err(e) => return failed(e),
        };
        let index = a.index;
        let Ok(found) = tokio::task::spawn_blocking(move || content::attachment(&raw, index)).await
        else {
            return failed("The server could not read this message.".into());
        };
        let Some(att) = found else {
            return failed(format!("This message has no attachment {}.", a.index + 1));
        };
        let total = att.data.len() as u64;
        let mut out = Vec::with_capacity(att.data.len() / CHUNK_BYTES + 1);
        let mut offset = 0usize;
        loop {
            let end = (offset + CHUNK_BYTES).min(att.data.len());
            out.push(envelope(Body::AttachmentChunk(AttachmentChunk {
                ref_id: a.ref_id,
                index: a.index,
                offset: offset as u64,
                total,
                data: att.data[offset..end].to_vec().into(),
                name: att.name.clone(),
                content_type: att.content_type.clone(),
                error: String::new(),
            })));
            offset = end;
            if offset >= att.data.len() {
                break;
            }
        }
        out
    }
}

/// A mailbox failure, as the phone user is told it (the administrator finds the details in
/// the log).
fn unavailable(e: &AgentError) -> String {
    tracing::warn!("a device's request could not be answered: {e}");
    "Your mailbox cannot be reached right now; try again later.".to_owned()
}
