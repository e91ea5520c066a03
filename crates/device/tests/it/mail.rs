//! The device's mail store on its own (what arrives, the outbox, local changes, hostile
//! values), and push mail end to end through a real relay with a scripted server.

use std::collections::HashMap;
use std::time::Duration;

use bramble_device::mail::{
    self, Change, Draft, MAX_ATTACHMENT, MAX_TEXT, MailKind, MailStore, OutboxState,
};
use bramble_device::{Device, DeviceError, MailEvent};
use bramble_net::link::frame_ref;
use bramble_net::{CertPin, Credentials, Link, LinkEvent};
use bramble_proto::schema::{
    self, AttachmentChunk, AttachmentInfo, Envelope, MailChange, MailFlags, MailHeaders, MailItem,
    MailMore, MailSubmitted, SubmitState, envelope::Body,
};
use bramble_proto::{Address, MasterKey, Pin, Session, SrpId};

fn env(body: Body) -> Envelope {
    Envelope {
        version: 1,
        body: Some(body),
    }
}

fn item(ref_id: u64, subject: &str, text: &str, total: u64, attachments: u32) -> Envelope {
    env(Body::MailItem(Box::new(MailItem {
        ref_id,
        folder: "INBOX".into(),
        headers: Some(MailHeaders {
            from: "Alice <alice@example.com>".into(),
            to: vec!["bob@example.com".into(), "carol@example.com".into()],
            cc: vec!["Dave <dave@example.com>".into()],
            subject: subject.into(),
            date_ms: 1_700_000_000_000 + i64::try_from(ref_id).unwrap_or(0),
            message_id: format!("m{ref_id}@example.com"),
            ..Default::default()
        }),
        text: text.into(),
        text_total: total,
        attachments: (0..attachments)
            .map(|i| AttachmentInfo {
                index: i,
                name: format!("file{i}.bin"),
                content_type: "application/octet-stream".into(),
                size: 3000,
            })
            .collect(),
        ..Default::default()
    })))
}

fn more(ref_id: u64, offset: u64, text: &str, total: u64) -> Envelope {
    env(Body::MailMore(MailMore {
        ref_id,
        offset,
        text: text.into(),
        text_total: total,
        error: String::new(),
    }))
}

fn chunk(ref_id: u64, index: u32, offset: u64, total: u64, data: &[u8]) -> Envelope {
    env(Body::AttachmentChunk(AttachmentChunk {
        ref_id,
        index,
        offset,
        total,
        data: data.to_vec().into(),
        name: "file.bin".into(),
        content_type: "application/octet-stream".into(),
        error: String::new(),
    }))
}

fn submitted(client_id: u64, state: SubmitState, message: &str) -> Envelope {
    env(Body::MailSubmitted(MailSubmitted {
        client_id,
        state: state.into(),
        message: message.into(),
        message_id: String::new(),
    }))
}

fn draft(to: &str, subject: &str) -> Draft {
    Draft {
        kind: MailKind::MailNew,
        to: vec![to.into()],
        subject: subject.into(),
        body: "Hello".into(),
        ..Default::default()
    }
}

fn is_bad_request(e: &Envelope) -> bool {
    matches!(&e.body, Some(Body::Error(r)) if r.code == schema::ErrorCode::BadRequest as i32)
}

async fn memory_store() -> MailStore {
    MailStore::open(None).await.expect("in-memory store")
}

#[tokio::test]
async fn a_message_sent_three_times_is_stored_once_and_confirmed_each_time() {
    let store = memory_store().await;
    let msg = item(42, "Lunch", "Shall we?", 9, 0);
    for i in 0..3 {
        let h = store.handle(&msg).await.expect("handled");
        let want = if i == 0 {
            MailEvent::NewMessage { ref_id: 42 }
        } else {
            MailEvent::Duplicate { ref_id: 42 }
        };
        assert_eq!(h.event, want);
        assert_eq!(h.replies.len(), 1);
        assert!(
            matches!(&h.replies[0].body, Some(Body::MailReceived(r)) if r.ref_ids == [42]),
            "{:?}",
            h.replies
        );
    }
    let inbox = store.inbox().await.expect("inbox");
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].ref_id, 42);
    assert_eq!(inbox[0].subject, "Lunch");
    assert_eq!(inbox[0].from, "Alice <alice@example.com>");
    assert!(!inbox[0].seen && !inbox[0].more);

    // A resend does not undo what the user did meanwhile.
    store.mark(42, Change::Seen(true)).await.expect("marked");
    store.handle(&msg).await.expect("handled");
    assert!(store.message(42).await.expect("there").seen);
}

#[tokio::test]
async fn the_mail_store_survives_reopening_the_home() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path().join("phone");
    let first_ids = {
        let dev = Device::open(&home).expect("device");
        let store = dev.mail_store().await.expect("store");
        store
            .handle(&item(7, "Kept", "Body", 4, 0))
            .await
            .expect("handled");
        store.mark(7, Change::Flagged(true)).await.expect("marked");
        let a = store
            .compose(&draft("a@example.com", "one"))
            .await
            .expect("a");
        let b = store
            .compose(&draft("b@example.com", "two"))
            .await
            .expect("b");
        store.close().await;
        vec![a.client_id, b.client_id]
    };
    assert!(
        first_ids[0] >= 1 && first_ids[1] > first_ids[0],
        "{first_ids:?}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.join(mail::MAIL_DB))
            .expect("mail.db")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }

    let dev = Device::open(&home).expect("reopens");
    let store = dev.mail_store().await.expect("store");
    let m = store.message(7).await.expect("still there");
    assert_eq!(
        (m.subject.as_str(), m.text.as_str(), m.flagged),
        ("Kept", "Body", true)
    );
    assert_eq!(store.pending_changes().await.expect("changes").len(), 1);
    assert_eq!(
        store
            .unsent()
            .await
            .expect("unsent")
            .iter()
            .map(|s| s.client_id)
            .collect::<Vec<_>>(),
        first_ids
    );
    // Still a duplicate after the restart.
    let h = store
        .handle(&item(7, "Kept", "Body", 4, 0))
        .await
        .expect("handled");
    assert_eq!(h.event, MailEvent::Duplicate { ref_id: 7 });
    // Client ids go on upwards after the restart.
    store
        .handle(&submitted(first_ids[1], SubmitState::SubmitAccepted, ""))
        .await
        .expect("handled");
    let c = store
        .compose(&draft("c@example.com", "three"))
        .await
        .expect("c");
    assert!(
        c.client_id > first_ids[1],
        "{} after {first_ids:?}",
        c.client_id
    );
}

#[tokio::test]
async fn more_text_is_appended_at_its_offset() {
    let store = memory_store().await;
    store
        .handle(&item(1, "Long", "Hello ", 18, 0))
        .await
        .expect("handled");
    assert!(store.inbox().await.expect("inbox")[0].more);

    let h = store
        .handle(&more(1, 6, "wörld", 18))
        .await
        .expect("handled");
    assert_eq!(
        h.event,
        MailEvent::MoreText {
            ref_id: 1,
            have: 12,
            total: 18,
            complete: false
        }
    );
    assert!(h.replies.is_empty());
    // The same answer again (a repeated request) adds nothing.
    store
        .handle(&more(1, 6, "wörld", 18))
        .await
        .expect("handled");
    assert_eq!(store.message(1).await.expect("m").text, "Hello wörld");
    // An answer overlapping what the device has adds only the new part.
    let h = store
        .handle(&more(1, 6, "wörld again", 18))
        .await
        .expect("handled");
    assert!(
        matches!(
            h.event,
            MailEvent::MoreText {
                have: 18,
                complete: true,
                ..
            }
        ),
        "{h:?}"
    );
    let m = store.message(1).await.expect("m");
    assert_eq!(m.text, "Hello wörld again");
    assert!(!m.more);

    // A gap, or an offset inside a character, is refused and reported to the server.
    store
        .handle(&item(2, "Gap", "abc", 100, 0))
        .await
        .expect("handled");
    let h = store
        .handle(&more(2, 10, "xyz", 100))
        .await
        .expect("handled");
    assert!(
        matches!(h.event, MailEvent::MoreFailed { ref_id: 2, .. }),
        "{h:?}"
    );
    assert!(h.replies.iter().any(is_bad_request));
    store
        .handle(&item(3, "Utf", "aé", 100, 0))
        .await
        .expect("handled");
    let h = store.handle(&more(3, 2, "éb", 100)).await.expect("handled");
    assert!(
        matches!(h.event, MailEvent::MoreFailed { ref_id: 3, .. }),
        "{h:?}"
    );
    assert_eq!(store.message(3).await.expect("m").text, "aé");

    // The server's refusal is reported as such.
    let h = store
        .handle(&env(Body::MailMore(MailMore {
            ref_id: 2,
            error: "The message is no longer in the mailbox.".into(),
            ..Default::default()
        })))
        .await
        .expect("handled");
    assert_eq!(
        h.event,
        MailEvent::MoreFailed {
            ref_id: 2,
            error: "The message is no longer in the mailbox.".into()
        }
    );
    // More for a message the device does not have.
    let h = store.handle(&more(99, 0, "x", 1)).await.expect("handled");
    assert!(matches!(h.event, MailEvent::Refused { .. }), "{h:?}");
}

#[tokio::test]
async fn attachments_are_assembled_in_order_and_saved() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = memory_store().await;
    store
        .handle(&item(5, "Files", "see", 3, 2))
        .await
        .expect("handled");
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    for (n, part) in data.chunks(1000).enumerate() {
        let offset = (n * 1000) as u64;
        let h = store
            .handle(&chunk(5, 1, offset, 3000, part))
            .await
            .expect("handled");
        assert_eq!(
            h.event,
            MailEvent::AttachmentPiece {
                ref_id: 5,
                index: 1,
                received: offset + 1000,
                total: 3000,
                complete: n == 2
            }
        );
    }
    assert!(store.attachment_ready(5, 1).await.expect("ready"));
    let out = tmp.path().join("out.bin");
    let saved = store.save_attachment(5, 1, &out).await.expect("saved");
    assert_eq!(saved.size, 3000);
    assert_eq!(saved.name, "file.bin");
    assert_eq!(std::fs::read(&out).expect("file"), data);
    // Saved, then dropped from the store.
    assert!(!store.attachment_ready(5, 1).await.expect("ready"));
    assert!(matches!(
        store.save_attachment(5, 1, &out).await,
        Err(DeviceError::AttachmentFailed(_))
    ));

    // An empty attachment is complete at once.
    let h = store
        .handle(&chunk(5, 0, 0, 0, b""))
        .await
        .expect("handled");
    assert!(
        matches!(h.event, MailEvent::AttachmentPiece { complete: true, .. }),
        "{h:?}"
    );
    let empty = tmp.path().join("empty");
    store.save_attachment(5, 0, &empty).await.expect("saved");
    assert_eq!(std::fs::read(&empty).expect("file").len(), 0);
}

#[tokio::test]
async fn attachment_pieces_out_of_order_inconsistent_or_too_large_are_refused() {
    let store = memory_store().await;
    store
        .handle(&item(5, "Files", "see", 3, 1))
        .await
        .expect("handled");
    let failed = |h: &bramble_device::mail::Handled| {
        matches!(
            h.event,
            MailEvent::AttachmentFailed {
                ref_id: 5,
                index: 0,
                ..
            }
        )
    };

    // Out of order: the second piece first, then a piece skipping one.
    let h = store
        .handle(&chunk(5, 0, 1000, 3000, &[1; 1000]))
        .await
        .expect("handled");
    assert!(failed(&h) && h.replies.iter().any(is_bad_request), "{h:?}");
    store
        .handle(&chunk(5, 0, 0, 3000, &[1; 1000]))
        .await
        .expect("handled");
    let h = store
        .handle(&chunk(5, 0, 2000, 3000, &[1; 1000]))
        .await
        .expect("handled");
    assert!(failed(&h), "{h:?}");
    assert!(!store.attachment_ready(5, 0).await.expect("ready"));
    // What had arrived was dropped: a piece after the failure has no beginning.
    let h = store
        .handle(&chunk(5, 0, 1000, 3000, &[1; 1000]))
        .await
        .expect("handled");
    assert!(failed(&h), "{h:?}");

    // Pieces that disagree about the size, or run past it.
    store
        .handle(&chunk(5, 0, 0, 3000, &[1; 1000]))
        .await
        .expect("handled");
    let h = store
        .handle(&chunk(5, 0, 1000, 4000, &[1; 1000]))
        .await
        .expect("handled");
    assert!(failed(&h), "{h:?}");
    let h = store
        .handle(&chunk(5, 0, 0, 10, &[1; 11]))
        .await
        .expect("handled");
    assert!(failed(&h), "{h:?}");
    let h = store
        .handle(&chunk(5, 0, u64::MAX, u64::MAX, &[1; 2]))
        .await
        .expect("handled");
    assert!(failed(&h), "{h:?}");

    // Too large for the device.
    let h = store
        .handle(&chunk(5, 0, 0, MAX_ATTACHMENT + 1, &[1; 10]))
        .await
        .expect("handled");
    match &h.event {
        MailEvent::AttachmentFailed { error, .. } => {
            assert!(error.contains("too large"), "{error}")
        }
        other => panic!("{other:?}"),
    }

    // The server's own error.
    let h = store
        .handle(&env(Body::AttachmentChunk(AttachmentChunk {
            ref_id: 5,
            index: 0,
            error: "The attachment is no longer available.".into(),
            ..Default::default()
        })))
        .await
        .expect("handled");
    assert_eq!(
        h.event,
        MailEvent::AttachmentFailed {
            ref_id: 5,
            index: 0,
            error: "The attachment is no longer available.".into()
        }
    );
    // An attachment the message does not have, of a message the device does not have.
    for bad in [chunk(5, 3, 0, 1, b"x"), chunk(6, 0, 0, 1, b"x")] {
        let h = store.handle(&bad).await.expect("handled");
        assert!(matches!(h.event, MailEvent::Refused { .. }), "{h:?}");
    }
}

#[tokio::test]
async fn the_outbox_moves_from_queued_to_sent_or_failed() {
    let store = memory_store().await;
    let a = store
        .compose(&draft("a@example.com", "A"))
        .await
        .expect("a");
    let b = store
        .compose(&draft("b@example.com", "B"))
        .await
        .expect("b");
    assert!(b.client_id > a.client_id);
    assert_eq!(
        store.unsent().await.expect("unsent"),
        vec![a.clone(), b.clone()]
    );

    let h = store
        .handle(&submitted(a.client_id, SubmitState::SubmitAccepted, ""))
        .await
        .expect("handled");
    assert_eq!(
        h.event,
        MailEvent::Submitted {
            client_id: a.client_id,
            state: OutboxState::Accepted,
            message: String::new()
        }
    );
    // accepted but not yet reported sent: still sent again on the next connection, so an
    // answer lost on the way is given again
    assert_eq!(
        store.unsent().await.expect("unsent"),
        vec![a.clone(), b.clone()]
    );
    store
        .handle(&submitted(a.client_id, SubmitState::SubmitSent, ""))
        .await
        .expect("handled");
    // Reports out of order: FAILED first, then a late ACCEPTED changes nothing.
    store
        .handle(&submitted(
            b.client_id,
            SubmitState::SubmitFailed,
            "No such user here",
        ))
        .await
        .expect("handled");
    let h = store
        .handle(&submitted(b.client_id, SubmitState::SubmitAccepted, ""))
        .await
        .expect("handled");
    assert!(
        matches!(
            h.event,
            MailEvent::Submitted {
                state: OutboxState::Failed,
                ..
            }
        ),
        "{h:?}"
    );
    assert!(store.unsent().await.expect("unsent").is_empty());
    let outbox = store.outbox().await.expect("outbox");
    let states: Vec<_> = outbox.iter().map(|e| (e.client_id, e.state)).collect();
    assert_eq!(
        states,
        vec![
            (b.client_id, OutboxState::Failed),
            (a.client_id, OutboxState::Sent)
        ]
    );
    assert_eq!(outbox[0].message, "No such user here");
    assert_eq!(outbox[0].to, vec!["b@example.com".to_owned()]);

    // Reports about something this device did not send, or in no known state.
    for bad in [
        submitted(999, SubmitState::SubmitSent, ""),
        submitted(a.client_id, SubmitState::SubmitUnspecified, ""),
    ] {
        let h = store.handle(&bad).await.expect("handled");
        assert!(matches!(h.event, MailEvent::Refused { .. }), "{h:?}");
    }

    // Drafts that cannot be sent.
    for bad in [
        Draft::default(),
        draft("a@example.com\r\nBcc: evil@example.com", "x"),
        draft("a@example.com", "two\nlines"),
        Draft {
            kind: MailKind::MailReply,
            ..draft("a@example.com", "Re: x")
        },
    ] {
        assert!(
            matches!(store.compose(&bad).await, Err(DeviceError::BadDraft(_))),
            "{bad:?}"
        );
    }
    let huge = Draft {
        body: "x".repeat(2 << 20),
        ..draft("a@example.com", "big")
    };
    assert!(matches!(
        store.compose(&huge).await,
        Err(DeviceError::TooLarge { .. })
    ));
}

#[tokio::test]
async fn replies_and_forwards_are_addressed_from_the_original() {
    let store = memory_store().await;
    store
        .handle(&item(3, "Plans", "x", 1, 0))
        .await
        .expect("handled");
    let r = store
        .reply_draft(3, false, "Yes", None)
        .await
        .expect("draft");
    assert_eq!(r.kind, MailKind::MailReply);
    assert_eq!(r.to, vec!["Alice <alice@example.com>".to_owned()]);
    assert!(r.cc.is_empty());
    assert_eq!(r.subject, "Re: Plans");
    let all = store
        .reply_draft(3, true, "Yes", Some("BOB@example.com"))
        .await
        .expect("draft");
    assert_eq!(all.kind, MailKind::MailReplyAll);
    assert_eq!(
        all.cc,
        vec![
            "carol@example.com".to_owned(),
            "Dave <dave@example.com>".to_owned()
        ]
    );
    let f = store
        .forward_draft(3, &["eve@example.com".into()], &[], "FYI")
        .await
        .expect("draft");
    assert_eq!(
        (f.kind, f.subject.as_str()),
        (MailKind::MailForward, "Fw: Plans")
    );
    let s = store.compose(&f).await.expect("composed");
    assert_eq!(s.original_ref_id, 3);
    assert!(matches!(
        store.reply_draft(404, false, "", None).await,
        Err(DeviceError::MessageNotFound(404))
    ));
}

#[tokio::test]
async fn local_changes_apply_at_once_and_wait_to_be_sent() {
    let store = memory_store().await;
    store
        .handle(&item(8, "x", "", 0, 0))
        .await
        .expect("handled");
    store
        .handle(&item(9, "y", "", 0, 0))
        .await
        .expect("handled");
    store.mark(8, Change::Seen(true)).await.expect("read");
    store
        .mark(8, Change::MovedTo("Archive".into()))
        .await
        .expect("moved");
    let c = store.mark(9, Change::Deleted(true)).await.expect("deleted");
    assert_eq!(c.ref_id, 9);
    let inbox = store.inbox().await.expect("inbox");
    assert_eq!(inbox.len(), 1);
    assert!(inbox[0].seen);
    assert_eq!(inbox[0].folder, "Archive");
    assert!(matches!(
        store.message(9).await,
        Err(DeviceError::MessageNotFound(9))
    ));
    assert_eq!(
        DeviceError::MessageNotFound(9).to_string(),
        "This message is no longer on the device (RefID 9)."
    );
    let pending = store.pending_changes().await.expect("pending");
    assert_eq!(pending.len(), 3);
    store.change_sent(pending[0].id).await.expect("sent");
    assert_eq!(store.pending_changes().await.expect("pending").len(), 2);
    assert!(matches!(
        store.mark(404, Change::Seen(true)).await,
        Err(DeviceError::MessageNotFound(404))
    ));
    assert!(matches!(
        store.mark(8, Change::MovedTo(" ".into())).await,
        Err(DeviceError::BadDraft(_))
    ));

    // Changes made in the mailbox.
    let change = |ref_id, c| {
        env(Body::MailChange(MailChange {
            ref_id,
            change: Some(c),
        }))
    };
    let h = store
        .handle(&change(8, Change::Flagged(true)))
        .await
        .expect("handled");
    assert_eq!(
        h.event,
        MailEvent::Changed {
            ref_id: 8,
            applied: true
        }
    );
    let h = store
        .handle(&change(9, Change::Deleted(false)))
        .await
        .expect("handled");
    assert_eq!(
        h.event,
        MailEvent::Changed {
            ref_id: 9,
            applied: true
        }
    );
    assert_eq!(store.inbox().await.expect("inbox").len(), 2);
    let h = store
        .handle(&change(77, Change::Seen(true)))
        .await
        .expect("handled");
    assert_eq!(
        h.event,
        MailEvent::Changed {
            ref_id: 77,
            applied: false
        }
    );
    for bad in [
        change(8, Change::MovedTo(String::new())),
        change(8, Change::MovedTo("a\u{0}b".into())),
        env(Body::MailChange(MailChange {
            ref_id: 8,
            change: None,
        })),
    ] {
        let h = store.handle(&bad).await.expect("handled");
        assert!(matches!(h.event, MailEvent::Refused { .. }), "{h:?}");
        assert!(h.replies.iter().any(is_bad_request));
    }
    // Not mail at all.
    let h = store.handle(&crate::ping("hi")).await.expect("handled");
    assert_eq!(h.event, MailEvent::NotMail);
    assert!(h.replies.is_empty());
}

#[tokio::test]
async fn hostile_values_are_bounded_and_never_panic() {
    let store = memory_store().await;
    // RefID 0 means "none".
    let h = store
        .handle(&item(0, "zero", "x", 1, 0))
        .await
        .expect("handled");
    assert!(matches!(h.event, MailEvent::Refused { .. }), "{h:?}");
    assert!(h.replies.iter().any(is_bad_request));
    assert!(store.inbox().await.expect("inbox").is_empty());

    // 3 MiB of text in the item, with a multi-byte character across the limit.
    let mut text = "a".repeat(MAX_TEXT - 1);
    text.push('€');
    text.push_str(&"b".repeat(2 << 20));
    let h = store
        .handle(&item(u64::MAX, "big", &text, u64::MAX, 0))
        .await
        .expect("handled");
    assert_eq!(h.event, MailEvent::NewMessage { ref_id: u64::MAX });
    let m = store.message(u64::MAX).await.expect("there");
    assert_eq!(m.text.len(), MAX_TEXT - 1);
    assert!(m.truncated && !m.more);
    // More text cannot make it grow.
    let h = store
        .handle(&more(u64::MAX, (MAX_TEXT - 1) as u64, "€€€€", u64::MAX))
        .await
        .expect("handled");
    assert!(
        matches!(h.event, MailEvent::MoreText { complete: true, .. }),
        "{h:?}"
    );
    assert_eq!(
        store.message(u64::MAX).await.expect("m").text.len(),
        MAX_TEXT - 1
    );

    // A message with more text than the limit, fetched bit by bit, stops at the limit.
    store
        .handle(&item(11, "long", "", u64::MAX, 0))
        .await
        .expect("handled");
    let piece = "z".repeat(300_000);
    for i in 0..5u64 {
        store
            .handle(&more(11, i * 300_000, &piece, u64::MAX))
            .await
            .expect("handled");
    }
    let m = store.message(11).await.expect("m");
    assert_eq!(m.text.len(), MAX_TEXT);
    assert!(!m.more && m.truncated);

    // Weird strings, dates and folders.
    let weird = env(Body::MailItem(Box::new(MailItem {
        ref_id: 12,
        folder: format!("{}\u{0}\n", "F".repeat(5000)),
        headers: Some(MailHeaders {
            from: "\u{202e}evil\u{0}<>".into(),
            subject: "\r\n\t\u{feff}".into(),
            date_ms: i64::MIN,
            importance: 77,
            ..Default::default()
        }),
        attachments: vec![AttachmentInfo {
            index: u32::MAX,
            size: u64::MAX,
            ..Default::default()
        }],
        notes: vec!["\u{0}".into()],
        flags: Some(MailFlags {
            seen: true,
            flagged: true,
        }),
        priority: true,
        ..Default::default()
    })));
    store.handle(&weird).await.expect("handled");
    let m = store.message(12).await.expect("m");
    assert!(m.folder.len() <= mail::MAX_FOLDER);
    assert!(!m.folder.contains('\n'));
    assert_eq!(m.importance, "normal");
    assert!(m.seen && m.flagged && m.priority);
    assert_eq!(store.inbox().await.expect("inbox").len(), 3);
    // Its one attachment, oddly numbered, is still attachment 0 to the device.
    let h = store
        .handle(&chunk(12, 0, 0, 1, b"x"))
        .await
        .expect("handled");
    assert!(
        matches!(h.event, MailEvent::AttachmentPiece { .. }),
        "{h:?}"
    );

    // An empty envelope, and messages meant for the server.
    let h = store
        .handle(&Envelope {
            version: 1,
            body: None,
        })
        .await
        .expect("handled");
    assert_eq!(h.event, MailEvent::NotMail);
    let h = store
        .handle(&env(Body::MoreRequest(schema::MoreRequest::default())))
        .await
        .expect("handled");
    assert!(matches!(h.event, MailEvent::Refused { .. }), "{h:?}");
}

#[tokio::test]
async fn a_damaged_mail_store_is_reported_in_words() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        tmp.path().join(mail::MAIL_DB),
        b"this is not a database, not at all!",
    )
    .expect("written");
    let err = MailStore::open(Some(tmp.path()))
        .await
        .expect_err("refused");
    assert!(matches!(err, DeviceError::MailStoreDamaged(_)), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("The mail store on this device is damaged: "),
        "{err}"
    );
}

// ---- end to end, through a real relay ---------------------------------------------------------

const STEP: Duration = Duration::from_secs(15);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {STEP:?}"))
}

/// The enterprise server's side: a link to the relay under an SRP id, one session.
struct Server {
    link: Link,
    srp: SrpId,
    pin: Pin,
    session: Session,
}

impl Server {
    async fn send(&mut self, env: &Envelope) {
        let body = prost::Message::encode_to_vec(env);
        let frame = self
            .session
            .sealer
            .seal(Address::Srp(self.srp), Address::Pin(self.pin), &body)
            .expect("seals");
        self.link.send(frame).await.expect("server sends");
    }

    async fn recv(&mut self) -> Envelope {
        loop {
            match self.link.recv().await.expect("server receives") {
                LinkEvent::Report(_) => {}
                LinkEvent::Sealed(frame) => {
                    let plain = self.session.opener.open(&frame).expect("opens");
                    self.link.ack(vec![frame_ref(&frame)]).await.expect("acks");
                    return bramble_proto::decode_message(&plain, 1 << 22).expect("envelope");
                }
                other => panic!("unexpected event {other:?}"),
            }
        }
    }
}

/// Answers like the messaging agent: submits (ACCEPTED then SENT, a repeat only ACCEPTED),
/// "More" from `body`, attachments from `blob` in 1000-byte pieces. Everything received is
/// passed on to `seen`.
async fn serve_mail(
    mut server: Server,
    body: String,
    blob: Vec<u8>,
    seen: tokio::sync::mpsc::UnboundedSender<Envelope>,
) {
    let mut submits: HashMap<u64, u32> = HashMap::new();
    loop {
        let got = server.recv().await;
        if seen.send(got.clone()).is_err() {
            return;
        }
        match &got.body {
            Some(Body::MailSubmit(s)) => {
                let n = submits.entry(s.client_id).or_default();
                *n += 1;
                server
                    .send(&submitted(s.client_id, SubmitState::SubmitAccepted, ""))
                    .await;
                if *n == 1 {
                    server
                        .send(&submitted(s.client_id, SubmitState::SubmitSent, ""))
                        .await;
                }
            }
            Some(Body::MoreRequest(r)) => {
                let from = usize::try_from(r.offset).expect("offset").min(body.len());
                let end = if r.all {
                    body.len()
                } else {
                    (from + 4).min(body.len())
                };
                server
                    .send(&more(
                        r.ref_id,
                        r.offset,
                        &body[from..end],
                        body.len() as u64,
                    ))
                    .await;
            }
            Some(Body::AttachmentRequest(r)) => {
                for (n, part) in blob.chunks(1000).enumerate() {
                    server
                        .send(&chunk(
                            r.ref_id,
                            r.index,
                            (n * 1000) as u64,
                            blob.len() as u64,
                            part,
                        ))
                        .await;
                }
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn push_mail_end_to_end_through_a_relay() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let relay_dir = tmp.path().join("relay");
    let (srp, srp_key) = bramble_relay::srp_add(&relay_dir, None)
        .await
        .expect("SRP id added");
    let mut cfg = bramble_relay::RelayConfig::with_data_dir(&relay_dir);
    cfg.server_listen = "127.0.0.1:0".parse().expect("addr");
    cfg.device_listen = "127.0.0.1:0".parse().expect("addr");
    let relay = bramble_relay::start(cfg).await.expect("relay starts");

    let key = MasterKey::generate().expect("key");
    let mut dev = Device::open(&tmp.path().join("phone")).expect("device");
    dev.set_relay(&relay.device_addr().to_string(), Some(relay.fingerprint()))
        .expect("sets");
    dev.provision(srp, key.clone()).expect("binds");
    let pin = dev.pin();
    let store = dev.mail_store().await.expect("store");
    let link = Link::connect(
        &relay.server_addr().to_string(),
        &CertPin::new(Some(relay.fingerprint())),
        Credentials::Server { srp, key: &srp_key },
    )
    .await
    .expect("server logs in");
    let mut server = Server {
        link,
        srp,
        pin,
        session: Session::server(&key, 1..1_000_000, 0).expect("session"),
    };
    // Seen once, so the relay queues for this PIN.
    within("connect", dev.connect())
        .await
        .expect("connects")
        .close()
        .await;

    // The server pushes a message, and pushes it again (not confirmed in time).
    let body = "Hello there, this is the whole text.".to_owned();
    let mut first = item(1001, "Pushed", &body[..6], body.len() as u64, 1);
    server.send(&first).await;
    if let Some(Body::MailItem(i)) = &mut first.body {
        i.resent = 1;
    }
    server.send(&first).await;

    {
        let mut conn = within("connect", dev.connect()).await.expect("connects");
        let report = within(
            "sync",
            mail::sync(&mut conn, &store, Duration::from_secs(1)),
        )
        .await
        .expect("synced");
        assert_eq!(
            (report.new_messages, report.duplicates),
            (1, 1),
            "{report:?}"
        );
        within("close", conn.close()).await;
    }
    for _ in 0..2 {
        let got = within("server recv", server.recv()).await;
        assert!(
            matches!(&got.body, Some(Body::MailReceived(r)) if r.ref_ids == [1001]),
            "{got:?}"
        );
    }
    let inbox = store.inbox().await.expect("inbox");
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert!(inbox[0].more);

    // From here the scripted server answers on its own.
    let blob: Vec<u8> = (0..2500u32).map(|i| (i % 7) as u8).collect();
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let serving = tokio::spawn(serve_mail(server, body.clone(), blob.clone(), seen_tx));

    // A local change made offline, and a message written offline.
    store
        .mark(1001, Change::Flagged(true))
        .await
        .expect("flagged");
    let submit = store
        .compose(&draft("zoe@example.com", "From the phone"))
        .await
        .expect("composed");
    let mut conn = within("connect", dev.connect()).await.expect("connects");
    let mut states = Vec::new();
    let entry = within(
        "submit",
        mail::wait_for_submit(&mut conn, &store, submit.client_id, STEP, |e| {
            states.push(e.state)
        }),
    )
    .await
    .expect("answered");
    assert_eq!(entry.state, OutboxState::Sent);
    assert_eq!(states, vec![OutboxState::Accepted, OutboxState::Sent]);
    assert!(store.unsent().await.expect("unsent").is_empty());
    assert!(store.pending_changes().await.expect("pending").is_empty());

    // "More", a part at a time, then the rest.
    let m = within(
        "more",
        mail::request_more(&mut conn, &store, 1001, false, STEP),
    )
    .await
    .expect("more");
    assert_eq!(m.text, body[..10]);
    let m = within(
        "all",
        mail::request_more(&mut conn, &store, 1001, true, STEP),
    )
    .await
    .expect("the rest");
    assert_eq!(m.text, body);
    assert!(!m.more);

    // The attachment, in three pieces.
    let out = tmp.path().join("att.bin");
    let saved = within(
        "attachment",
        mail::fetch_attachment(&mut conn, &store, 1001, 0, &out, STEP),
    )
    .await
    .expect("fetched");
    assert_eq!(saved.size, 2500);
    assert_eq!(std::fs::read(&out).expect("file"), blob);
    assert!(matches!(
        mail::fetch_attachment(&mut conn, &store, 1001, 5, &out, STEP).await,
        Err(DeviceError::NoSuchAttachment { index: 5, .. })
    ));
    within("close", conn.close()).await;
    serving.abort();

    let mut kinds = Vec::new();
    while let Ok(e) = seen.try_recv() {
        kinds.push(match e.body {
            Some(Body::MailSubmit(_)) => "submit",
            Some(Body::MailChange(c)) => {
                assert_eq!(
                    c,
                    MailChange {
                        ref_id: 1001,
                        change: Some(Change::Flagged(true))
                    }
                );
                "change"
            }
            Some(Body::MoreRequest(_)) => "more",
            Some(Body::AttachmentRequest(_)) => "attachment",
            _ => "other",
        });
    }
    assert_eq!(kinds, ["submit", "change", "more", "more", "attachment"]);
    relay.shutdown().await;
}
