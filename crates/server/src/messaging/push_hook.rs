//! The mail server's push hook: the fast path to new mail. Dovecot's push_notification
//! plugin (Lua driver) POSTs one JSON object per mail event about 8 ms after delivery, where
//! IMAP IDLE tells only after a fixed 500 ms. An event for a watched INBOX pokes that
//! mailbox's watcher to look at once. The hook is fire-and-forget on Dovecot's side, so IDLE
//! stays the safety net and the watchers resynchronise over IMAP after a restart.
//!
//! Listen on loopback (or a link only the mail server reaches): the hook carries no
//! credentials, and all it can do is make a watcher look sooner.
//!
//! Owns: the hook's HTTP surface. Must not touch: mail content (it only pokes).

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;

use super::mailbox::Watchers;

/// The largest event accepted.
const MAX_EVENT: usize = 16 * 1024;

/// One event as Dovecot's Lua driver sends it (fields beyond these are ignored).
#[derive(Debug, Deserialize)]
struct Event {
    user: String,
    #[serde(default)]
    event: String,
    #[serde(default)]
    mailbox: String,
}

/// Whether an event can mean new mail in the INBOX.
fn is_new_mail(e: &Event) -> bool {
    let name: String = e
        .event
        .chars()
        .filter(|c| *c != '_')
        .collect::<String>()
        .to_ascii_lowercase();
    e.mailbox.eq_ignore_ascii_case("INBOX")
        && matches!(name.as_str(), "messagenew" | "messageappend")
}

/// The hook's routes: `POST /dovecot` (and `POST /`).
pub fn app(watchers: Arc<Watchers>) -> Router {
    Router::new()
        .route("/", post(hook))
        .route("/dovecot", post(hook))
        .layer(DefaultBodyLimit::max(MAX_EVENT))
        .with_state(watchers)
}

async fn hook(
    State(watchers): State<Arc<Watchers>>,
    body: Result<Json<Event>, axum::extract::rejection::JsonRejection>,
) -> StatusCode {
    let Ok(Json(event)) = body else {
        return StatusCode::BAD_REQUEST;
    };
    if is_new_mail(&event) {
        let watched = watchers.poke(&event.user);
        tracing::trace!(user = %event.user, watched, "push hook: new mail");
    }
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_new_mail_in_the_inbox_pokes() {
        let ev = |event: &str, mailbox: &str| Event {
            user: "a@b.c".into(),
            event: event.into(),
            mailbox: mailbox.into(),
        };
        assert!(is_new_mail(&ev("MessageNew", "INBOX")));
        assert!(is_new_mail(&ev("message_new", "inbox")));
        assert!(is_new_mail(&ev("MessageAppend", "INBOX")));
        assert!(!is_new_mail(&ev("MessageRead", "INBOX")));
        assert!(!is_new_mail(&ev("MessageNew", "Sent")));
    }
}
