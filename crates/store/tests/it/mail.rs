//! Push mail: IMAP cursors, the RefID map and its delivery states, the device outbox and the
//! per-user mail settings.

use bramble_store::{MailCursor, MailSettings, NewMailItem, Store, StoreError, now_ms};

use crate::fixture;

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";

/// An IMAP message `uid` (under UIDVALIDITY 7) of `email`'s INBOX.
pub fn imap_item(email: &str, uid: u32) -> NewMailItem {
    NewMailItem {
        email: email.to_owned(),
        folder: "INBOX".to_owned(),
        source_key: format!("imap:7:{uid}"),
        uid_validity: Some(7),
        uid: Some(uid),
        message_id: Some(format!("<{uid}@example.com>")),
        item: format!("item {uid}").into_bytes(),
        seen: false,
        flagged: false,
    }
}

/// A store with users Alice and Bob.
async fn two_users() -> anyhow::Result<crate::Fixture> {
    let f = fixture().await?;
    f.store.add_user(ALICE, None).await?;
    f.store.add_user(BOB, None).await?;
    Ok(f)
}

async fn cursor(s: &Store, folder: &str) -> anyhow::Result<Option<(u32, u32)>> {
    Ok(s.mail_cursor(ALICE, folder)
        .await?
        .map(|c| (c.uid_validity, c.next_uid)))
}

#[tokio::test]
async fn cursors_never_move_back_under_one_uidvalidity() -> anyhow::Result<()> {
    let f = two_users().await?;
    let s = &f.store;
    assert_eq!(s.mail_cursor(ALICE, "INBOX").await?, None);

    s.set_mail_cursor(ALICE, "INBOX", 7, 10).await?;
    assert_eq!(
        s.mail_cursor("Alice@Example.com", "INBOX").await?,
        Some(MailCursor {
            uid_validity: 7,
            next_uid: 10,
            highest_modseq: None
        })
    );
    s.set_mail_cursor(ALICE, "INBOX", 7, 15).await?;
    assert_eq!(cursor(s, "INBOX").await?, Some((7, 15)));
    // Lower under the same UIDVALIDITY: kept.
    s.set_mail_cursor(ALICE, "INBOX", 7, 3).await?;
    assert_eq!(cursor(s, "INBOX").await?, Some((7, 15)));
    // A new UIDVALIDITY replaces both, even with a lower UID.
    s.set_mail_cursor(ALICE, "INBOX", 8, 2).await?;
    assert_eq!(cursor(s, "INBOX").await?, Some((8, 2)));
    // The extremes of u32 are kept.
    s.set_mail_cursor(ALICE, "INBOX", u32::MAX, u32::MAX)
        .await?;
    assert_eq!(cursor(s, "INBOX").await?, Some((u32::MAX, u32::MAX)));

    // Per folder and per user.
    assert_eq!(cursor(s, "Archive").await?, None);
    assert_eq!(s.mail_cursor(BOB, "INBOX").await?, None);
    s.set_mail_cursor(ALICE, "Archive", 1, 1).await?;
    assert_eq!(cursor(s, "Archive").await?, Some((1, 1)));
    assert_eq!(cursor(s, "INBOX").await?, Some((u32::MAX, u32::MAX)));

    let err = s
        .set_mail_cursor("nobody@example.com", "INBOX", 1, 1)
        .await
        .expect_err("no such user");
    assert!(matches!(err, StoreError::NoSuchUser { email } if email == "nobody@example.com"));
    Ok(())
}

#[tokio::test]
async fn add_mail_item_is_idempotent_per_source() -> anyhow::Result<()> {
    let f = two_users().await?;
    let s = &f.store;
    let before = now_ms();
    let (r1, new) = s.add_mail_item(&imap_item(ALICE, 1)).await?;
    assert!(new);
    // Found again (after a crash, say): the same RefID, not new, the first copy kept.
    let again = NewMailItem {
        item: b"changed".to_vec(),
        email: "ALICE@example.com".into(),
        ..imap_item(ALICE, 1)
    };
    assert_eq!(s.add_mail_item(&again).await?, (r1, false));
    let row = s.mail_item(ALICE, r1).await?.expect("stored");
    assert_eq!(row.item, b"item 1");
    assert_eq!(row.email, ALICE);
    assert_eq!(row.folder, "INBOX");
    assert_eq!(row.source_key, "imap:7:1");
    assert_eq!((row.uid_validity, row.uid), (Some(7), Some(1)));
    assert_eq!(row.message_id.as_deref(), Some("<1@example.com>"));
    assert_eq!(row.state, "pending");
    assert!(!row.seen && !row.flagged);
    assert!(row.created_at >= before);
    assert_eq!(
        (row.sent_at, row.sent_count, row.relayed_at),
        (None, 0, None)
    );
    assert_eq!(row.confirmed_at, None);

    // Another key, folder or user is another message.
    let (r2, new) = s.add_mail_item(&imap_item(ALICE, 2)).await?;
    assert!(new && r2 != r1);
    let (r3, new) = s
        .add_mail_item(&NewMailItem {
            folder: "Archive".into(),
            ..imap_item(ALICE, 1)
        })
        .await?;
    assert!(new && r3 != r1 && r3 != r2);
    let (r4, new) = s.add_mail_item(&imap_item(BOB, 1)).await?;
    assert!(new && ![r1, r2, r3].contains(&r4));

    // A Maildir message has no UIDs; flags are stored as given.
    let (r5, _) = s
        .add_mail_item(&NewMailItem {
            source_key: "maildir:1700000000.M1P2.host".into(),
            uid_validity: None,
            uid: None,
            message_id: None,
            seen: true,
            flagged: true,
            ..imap_item(ALICE, 0)
        })
        .await?;
    let row = s.mail_item(ALICE, r5).await?.expect("stored");
    assert_eq!(
        (row.uid_validity, row.uid, row.message_id),
        (None, None, None)
    );
    assert!(row.seen && row.flagged);

    let err = s
        .add_mail_item(&imap_item("nobody@example.com", 1))
        .await
        .expect_err("no such user");
    assert!(matches!(err, StoreError::NoSuchUser { .. }));
    Ok(())
}

#[tokio::test]
async fn mail_items_are_found_only_by_their_owner() -> anyhow::Result<()> {
    let f = two_users().await?;
    let s = &f.store;
    let (r, _) = s.add_mail_item(&imap_item(ALICE, 1)).await?;
    assert_eq!(
        s.mail_item("Alice@example.COM", r).await?.map(|i| i.ref_id),
        Some(r)
    );
    assert_eq!(s.mail_item(BOB, r).await?, None, "another user's RefID");
    assert_eq!(s.mail_item(ALICE, r + 1000).await?, None);

    let by = s
        .mail_item_by_source(" alice@example.com", "INBOX", "imap:7:1")
        .await?
        .expect("found by source");
    assert_eq!(by.ref_id, r);
    assert_eq!(s.mail_item_by_source(BOB, "INBOX", "imap:7:1").await?, None);
    assert_eq!(
        s.mail_item_by_source(ALICE, "Archive", "imap:7:1").await?,
        None
    );
    assert_eq!(
        s.mail_item_by_source(ALICE, "INBOX", "imap:7:2").await?,
        None
    );
    Ok(())
}

#[tokio::test]
async fn sending_relaying_and_resending() -> anyhow::Result<()> {
    let f = two_users().await?;
    let s = &f.store;
    let (a1, _) = s.add_mail_item(&imap_item(ALICE, 1)).await?;
    let (a2, _) = s.add_mail_item(&imap_item(ALICE, 2)).await?;
    let (b1, _) = s.add_mail_item(&imap_item(BOB, 1)).await?;
    let ids = |rows: Vec<bramble_store::MailItemRow>| -> Vec<i64> {
        rows.into_iter().map(|r| r.ref_id).collect()
    };

    // Never sent: unrelayed and due, oldest first, bounded.
    assert_eq!(ids(s.mail_items_unrelayed(10).await?), [a1, a2, b1]);
    assert_eq!(ids(s.mail_items_unrelayed(2).await?), [a1, a2]);
    assert_eq!(ids(s.mail_items_due(0, 10).await?), [a1, a2, b1]);

    let before = now_ms();
    s.mark_mail_sent(a1, 100).await?;
    s.mark_mail_sent(b1, 100).await?;
    let row = s.mail_item(ALICE, a1).await?.expect("a1");
    assert_eq!(row.sent_count, 1);
    assert!(row.sent_at.is_some_and(|t| t >= before));
    assert_eq!(row.relayed_at, None);
    // Sent but not reported by the relay: still unrelayed; not due before its send.
    assert_eq!(ids(s.mail_items_unrelayed(10).await?), [a1, a2, b1]);
    assert_eq!(ids(s.mail_items_due(before, 10).await?), [a2]);
    assert_eq!(ids(s.mail_items_due(i64::MAX, 10).await?), [a1, a2, b1]);

    // The relay's report names the frame by sequence number, per user.
    assert_eq!(s.mark_mail_relayed(ALICE, 100).await?, Some(a1));
    assert_eq!(
        s.mark_mail_relayed(ALICE, 101).await?,
        None,
        "not a mail frame"
    );
    assert_eq!(s.mark_mail_relayed("nobody@example.com", 100).await?, None);
    assert!(
        s.mail_item(ALICE, a1)
            .await?
            .expect("a1")
            .relayed_at
            .is_some()
    );
    assert_eq!(
        s.mail_item(BOB, b1).await?.expect("b1").relayed_at,
        None,
        "Bob's frame 100 is not Alice's"
    );
    assert_eq!(ids(s.mail_items_unrelayed(10).await?), [a2, b1]);

    // Sent again: counted, and unrelayed until reported again.
    s.mark_mail_sent(a1, 105).await?;
    let row = s.mail_item(ALICE, a1).await?.expect("a1");
    assert_eq!((row.sent_count, row.relayed_at), (2, None));
    assert_eq!(
        s.mark_mail_relayed(ALICE, 100).await?,
        None,
        "the old frame"
    );
    assert_eq!(s.mark_mail_relayed(ALICE, 105).await?, Some(a1));

    let err = s.mark_mail_sent(a2, u64::MAX).await.expect_err("too large");
    assert!(matches!(err, StoreError::OutOfRange { .. }));
    Ok(())
}

#[tokio::test]
async fn a_reused_sequence_number_marks_only_the_last_send() -> anyhow::Result<()> {
    // A re-activated device counts from the start again: frame 1 of the new device is not
    // the old device's frame 1.
    let f = two_users().await?;
    let s = &f.store;
    let (old, _) = s.add_mail_item(&imap_item(ALICE, 1)).await?;
    let (new, _) = s.add_mail_item(&imap_item(ALICE, 2)).await?;
    s.mark_mail_sent(old, 1).await?;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    s.mark_mail_sent(new, 1).await?;
    assert_eq!(s.mark_mail_relayed(ALICE, 1).await?, Some(new));
    assert_eq!(
        s.mail_item(ALICE, old).await?.expect("old").relayed_at,
        None
    );
    Ok(())
}

#[tokio::test]
async fn confirmations_count_only_pending_items() -> anyhow::Result<()> {
    let f = two_users().await?;
    let s = &f.store;
    let (a1, _) = s.add_mail_item(&imap_item(ALICE, 1)).await?;
    let (a2, _) = s.add_mail_item(&imap_item(ALICE, 2)).await?;
    let (a3, _) = s.add_mail_item(&imap_item(ALICE, 3)).await?;
    let (b1, _) = s.add_mail_item(&imap_item(BOB, 1)).await?;
    assert_eq!(s.mail_pending_count(ALICE).await?, 3);
    assert_eq!(s.mail_pending_count(BOB).await?, 1);
    assert_eq!(s.mail_pending_count("nobody@example.com").await?, 0);

    assert_eq!(s.confirm_mail(ALICE, &[]).await?, 0);
    // Bob's RefID and an unknown one do not count.
    let before = now_ms();
    assert_eq!(
        s.confirm_mail("ALICE@example.com", &[a1, a2, b1, 999_999])
            .await?,
        2
    );
    assert_eq!(s.confirm_mail(ALICE, &[a1, a2]).await?, 0, "repeated");
    assert_eq!(s.mail_pending_count(ALICE).await?, 1);
    assert_eq!(s.mail_pending_count(BOB).await?, 1);
    let row = s.mail_item(ALICE, a1).await?.expect("a1");
    assert_eq!(row.state, "delivered");
    assert!(row.confirmed_at.is_some_and(|t| t >= before));
    assert_eq!(s.mail_item(BOB, b1).await?.expect("b1").state, "pending");

    // Delivered items are no longer resent.
    let due: Vec<i64> = s
        .mail_items_due(i64::MAX, 10)
        .await?
        .iter()
        .map(|r| r.ref_id)
        .collect();
    assert_eq!(due, [a3, b1]);

    // Removed: no longer pending, nor confirmable; a delivered item stays delivered.
    s.remove_mail_item(a3).await?;
    s.remove_mail_item(a1).await?;
    assert_eq!(s.mail_item(ALICE, a3).await?.expect("a3").state, "removed");
    assert_eq!(
        s.mail_item(ALICE, a1).await?.expect("a1").state,
        "delivered"
    );
    assert_eq!(s.mail_pending_count(ALICE).await?, 0);
    assert_eq!(s.confirm_mail(ALICE, &[a3]).await?, 0);
    assert!(
        s.mail_items_unrelayed(10)
            .await?
            .iter()
            .all(|r| r.ref_id == b1)
    );

    // Many at once (more than one chunk of 500).
    let mut many = Vec::new();
    for uid in 100..(100 + 1001) {
        many.push(s.add_mail_item(&imap_item(BOB, uid)).await?.0);
    }
    assert_eq!(s.confirm_mail(BOB, &many).await?, 1001);
    assert_eq!(s.mail_pending_count(BOB).await?, 1);
    Ok(())
}

#[tokio::test]
async fn the_outbox_takes_a_submission_once() -> anyhow::Result<()> {
    let f = two_users().await?;
    let s = &f.store;
    let before = now_ms();
    let (row, new) = s
        .add_outbox(ALICE, 0x2100_0001, 1, b"submit 1", "<m1@x>")
        .await?;
    assert!(new);
    assert_eq!(row.email, ALICE);
    assert_eq!((row.pin, row.client_id), (0x2100_0001, 1));
    assert_eq!(row.request, b"submit 1");
    assert_eq!(row.state, "queued");
    assert_eq!(row.message_id.as_deref(), Some("<m1@x>"));
    assert_eq!((row.error.as_deref(), row.attempts), (None, 0));
    assert!(row.created_at >= before && row.updated_at == row.created_at);
    assert_eq!(s.outbox(row.id).await?, Some(row.clone()));

    // Repeated by the device: the first row, not new.
    let (again, new) = s
        .add_outbox("Alice@example.com", 0x2100_0001, 1, b"other", "<m2@x>")
        .await?;
    assert!(!new);
    assert_eq!(again, row);

    // Another client id, PIN or user is another submission.
    let (r2, new) = s
        .add_outbox(ALICE, 0x2100_0001, 2, b"submit 2", "<m2@x>")
        .await?;
    assert!(new && r2.id != row.id);
    let (r3, new) = s
        .add_outbox(ALICE, 0x2100_0002, 1, b"submit 3", "<m3@x>")
        .await?;
    assert!(new && r3.id != row.id);
    let (r4, new) = s
        .add_outbox(BOB, 0x2100_0001, 1, b"submit 4", "<m4@x>")
        .await?;
    assert!(new && r4.id != row.id);

    let big = s.add_outbox(ALICE, u32::MAX, u64::MAX, b"", "<m@x>").await;
    assert!(matches!(big, Err(StoreError::OutOfRange { .. })));
    let none = s.add_outbox("nobody@example.com", 1, 1, b"", "<m@x>").await;
    assert!(matches!(none, Err(StoreError::NoSuchUser { .. })));
    assert_eq!(s.outbox(999_999).await?, None);
    Ok(())
}

#[tokio::test]
async fn outbox_states_and_attempts() -> anyhow::Result<()> {
    let f = two_users().await?;
    let s = &f.store;
    let (a, _) = s.add_outbox(ALICE, 1, 1, b"a", "<a@x>").await?;
    let (b, _) = s.add_outbox(BOB, 2, 1, b"b", "<b@x>").await?;
    let (c, _) = s.add_outbox(ALICE, 1, 2, b"c", "<c@x>").await?;
    let due = |rows: Vec<bramble_store::OutboxRow>| -> Vec<i64> {
        rows.into_iter().map(|r| r.id).collect()
    };
    assert_eq!(due(s.outbox_due(10).await?), [a.id, b.id, c.id]);
    assert_eq!(due(s.outbox_due(1).await?), [a.id]);

    // 'sending' counts an attempt and stays due (a crash may have interrupted it).
    s.set_outbox_state(a.id, "sending", None).await?;
    let row = s.outbox(a.id).await?.expect("a");
    assert_eq!((row.state.as_str(), row.attempts), ("sending", 1));
    assert!(row.updated_at >= a.updated_at);
    assert_eq!(due(s.outbox_due(10).await?), [a.id, b.id, c.id]);

    // A transient error: queued again, with the error kept.
    s.set_outbox_state(a.id, "queued", Some("450 try later"))
        .await?;
    let row = s.outbox(a.id).await?.expect("a");
    assert_eq!((row.state.as_str(), row.attempts), ("queued", 1));
    assert_eq!(row.error.as_deref(), Some("450 try later"));
    s.set_outbox_state(a.id, "sending", None).await?;
    s.set_outbox_state(a.id, "sent", None).await?;
    let row = s.outbox(a.id).await?.expect("a");
    assert_eq!(
        (row.state.as_str(), row.attempts, row.error),
        ("sent", 2, None)
    );

    s.set_outbox_state(b.id, "sending", None).await?;
    s.set_outbox_state(b.id, "failed", Some("550 no such user"))
        .await?;
    let row = s.outbox(b.id).await?.expect("b");
    assert_eq!((row.state.as_str(), row.attempts), ("failed", 1));
    assert_eq!(row.error.as_deref(), Some("550 no such user"));
    assert_eq!(due(s.outbox_due(10).await?), [c.id]);

    let err = s
        .set_outbox_state(c.id, "lost", None)
        .await
        .expect_err("no such state");
    assert!(matches!(&err, StoreError::InvalidOutboxState { state } if state == "lost"));
    assert!(
        err.to_string().contains("queued, sending, sent or failed"),
        "{err}"
    );
    assert_eq!(s.outbox(c.id).await?.expect("c").state, "queued");
    Ok(())
}

#[tokio::test]
async fn mail_settings_default_and_set() -> anyhow::Result<()> {
    let f = two_users().await?;
    let s = &f.store;
    let defaults = MailSettings {
        push: true,
        save_sent: true,
        reconcile: true,
    };
    assert_eq!(MailSettings::default(), defaults);
    assert_eq!(s.mail_settings(ALICE).await?, defaults);
    assert_eq!(s.mail_settings("nobody@example.com").await?, defaults);

    let off = MailSettings {
        push: false,
        save_sent: true,
        reconcile: false,
    };
    s.set_mail_settings("ALICE@example.com", &off).await?;
    assert_eq!(s.mail_settings(ALICE).await?, off);
    assert_eq!(s.mail_settings(BOB).await?, defaults, "per user");
    let other = MailSettings {
        push: true,
        save_sent: false,
        reconcile: true,
    };
    s.set_mail_settings(ALICE, &other).await?;
    assert_eq!(s.mail_settings(ALICE).await?, other);

    let err = s
        .set_mail_settings("nobody@example.com", &off)
        .await
        .expect_err("no such user");
    assert!(matches!(err, StoreError::NoSuchUser { .. }));
    Ok(())
}

#[tokio::test]
async fn a_deleted_user_takes_their_mail_along() -> anyhow::Result<()> {
    let f = two_users().await?;
    let s = &f.store;
    let (r, _) = s.add_mail_item(&imap_item(ALICE, 1)).await?;
    s.enqueue_mail_change(ALICE, r, b"read").await?;
    s.add_outbox(ALICE, 1, 1, b"a", "<a@x>").await?;
    s.set_mail_cursor(ALICE, "INBOX", 7, 2).await?;
    s.set_mail_settings(ALICE, &MailSettings::default()).await?;
    assert!(s.delete_user(ALICE).await?);
    assert_eq!(s.mail_items_unrelayed(10).await?, []);
    assert_eq!(s.outbox_due(10).await?, []);
    assert_eq!(s.mail_changes_due(10).await?, []);
    Ok(())
}
