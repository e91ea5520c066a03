//! Push-mail reconciliation: flags, moves, forgetting, a folder's listing, CONDSTORE
//! mod-sequences and the queue of changes a device asked for.

use bramble_store::{MailCursor, NewMailItem, StoreError};

use crate::fixture;
use crate::mail::imap_item;

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";

async fn two_users() -> anyhow::Result<crate::Fixture> {
    let f = fixture().await?;
    f.store.add_user(ALICE, None).await?;
    f.store.add_user(BOB, None).await?;
    Ok(f)
}

#[tokio::test]
async fn flags_change_only_when_asked_and_different() -> anyhow::Result<()> {
    let f = two_users().await?;
    let s = &f.store;
    let (r, _) = s.add_mail_item(&imap_item(ALICE, 1)).await?;
    let flags = async |r| -> anyhow::Result<(bool, bool)> {
        let row = s.mail_item(ALICE, r).await?.expect("stored");
        Ok((row.seen, row.flagged))
    };
    assert_eq!(flags(r).await?, (false, false));
    assert!(!s.set_mail_flags(r, None, None).await?, "nothing asked");
    assert!(
        !s.set_mail_flags(r, Some(false), Some(false)).await?,
        "as it was"
    );
    assert!(s.set_mail_flags(r, Some(true), None).await?);
    assert_eq!(flags(r).await?, (true, false));
    assert!(!s.set_mail_flags(r, Some(true), None).await?, "repeated");
    assert!(s.set_mail_flags(r, None, Some(true)).await?);
    assert_eq!(flags(r).await?, (true, true));
    assert!(
        s.set_mail_flags(r, Some(false), Some(true)).await?,
        "one of two differs"
    );
    assert_eq!(flags(r).await?, (false, true));
    assert!(s.set_mail_flags(r, Some(true), Some(false)).await?);
    assert_eq!(flags(r).await?, (true, false));
    assert!(
        !s.set_mail_flags(999_999, Some(true), Some(true)).await?,
        "no such item"
    );

    // Found again in the mailbox: the recorded flags stay.
    let again = NewMailItem {
        flagged: true,
        ..imap_item(ALICE, 1)
    };
    assert_eq!(s.add_mail_item(&again).await?, (r, false));
    assert_eq!(flags(r).await?, (true, false));
    Ok(())
}

#[tokio::test]
async fn a_moved_message_keeps_its_ref_id() -> anyhow::Result<()> {
    let f = two_users().await?;
    let s = &f.store;
    let (r, _) = s.add_mail_item(&imap_item(ALICE, 1)).await?;
    s.set_mail_flags(r, Some(true), Some(true)).await?;
    s.confirm_mail(ALICE, &[r]).await?;

    s.move_mail_item(r, "Archive", "imap:9:40", Some(9), Some(40))
        .await?;
    let row = s.mail_item(ALICE, r).await?.expect("still there");
    assert_eq!(row.folder, "Archive");
    assert_eq!(row.source_key, "imap:9:40");
    assert_eq!((row.uid_validity, row.uid), (Some(9), Some(40)));
    assert_eq!(row.state, "delivered", "state kept");
    assert!(row.seen && row.flagged, "flags kept");
    assert_eq!(
        s.mail_item_by_source(ALICE, "INBOX", "imap:7:1").await?,
        None
    );
    assert_eq!(
        s.mail_item_by_source(ALICE, "Archive", "imap:9:40")
            .await?
            .map(|i| i.ref_id),
        Some(r)
    );
    // Its old place is free: the message found there again would be new.
    assert!(s.add_mail_item(&imap_item(ALICE, 1)).await?.1);

    // Into a Maildir store: no UIDs; onto itself: nothing to refuse.
    s.move_mail_item(r, "Archive", "maildir:1.M2.host", None, None)
        .await?;
    s.move_mail_item(r, "Archive", "maildir:1.M2.host", None, None)
        .await?;
    let row = s.mail_item(ALICE, r).await?.expect("still there");
    assert_eq!((row.uid_validity, row.uid), (None, None));

    let err = s
        .move_mail_item(999_999, "Archive", "imap:9:41", Some(9), Some(41))
        .await
        .expect_err("no such item");
    assert!(matches!(
        err,
        StoreError::NoSuchMailItem { ref_id: 999_999 }
    ));
    Ok(())
}

#[tokio::test]
async fn a_move_onto_a_recorded_message_is_refused() -> anyhow::Result<()> {
    let f = two_users().await?;
    let s = &f.store;
    let (r, _) = s.add_mail_item(&imap_item(ALICE, 1)).await?;
    // The Archive's watcher found the moved message first.
    let (other, _) = s
        .add_mail_item(&NewMailItem {
            folder: "Archive".into(),
            source_key: "imap:9:40".into(),
            ..imap_item(ALICE, 40)
        })
        .await?;
    let err = s
        .move_mail_item(r, "Archive", "imap:9:40", Some(9), Some(40))
        .await
        .expect_err("taken");
    match &err {
        StoreError::MailItemExists {
            ref_id,
            folder,
            source_key,
            existing,
        } => {
            assert_eq!((*ref_id, *existing), (r, other));
            assert_eq!(
                (folder.as_str(), source_key.as_str()),
                ("Archive", "imap:9:40")
            );
        }
        e => panic!("unexpected error {e:?}"),
    }
    assert!(err.to_string().contains("forget one"), "{err}");
    let row = s.mail_item(ALICE, r).await?.expect("unchanged");
    assert_eq!(
        (row.folder.as_str(), row.source_key.as_str()),
        ("INBOX", "imap:7:1")
    );

    // Another user's message in the same place is no obstacle.
    let (b, _) = s.add_mail_item(&imap_item(BOB, 1)).await?;
    s.move_mail_item(b, "Archive", "imap:9:40", Some(9), Some(40))
        .await?;

    // Once the caller forgot one of the two (deleted the row's key by moving it), it works.
    s.forget_mail_item(other).await?;
    s.move_mail_item(other, "Archive", "gone:1", None, None)
        .await?;
    s.move_mail_item(r, "Archive", "imap:9:40", Some(9), Some(40))
        .await?;
    Ok(())
}

#[tokio::test]
async fn forgetting_removes_whatever_the_state() -> anyhow::Result<()> {
    let f = two_users().await?;
    let s = &f.store;
    let (pending, _) = s.add_mail_item(&imap_item(ALICE, 1)).await?;
    let (delivered, _) = s.add_mail_item(&imap_item(ALICE, 2)).await?;
    s.confirm_mail(ALICE, &[delivered]).await?;

    // remove_mail_item leaves a delivered message alone; forget_mail_item does not.
    s.remove_mail_item(delivered).await?;
    assert_eq!(
        s.mail_item(ALICE, delivered).await?.expect("d").state,
        "delivered"
    );
    assert!(s.forget_mail_item(delivered).await?);
    assert_eq!(
        s.mail_item(ALICE, delivered).await?.expect("d").state,
        "removed"
    );
    assert!(s.forget_mail_item(pending).await?);
    assert_eq!(
        s.mail_item(ALICE, pending).await?.expect("p").state,
        "removed"
    );
    assert!(!s.forget_mail_item(pending).await?, "already removed");
    assert!(!s.forget_mail_item(999_999).await?, "no such item");
    assert_eq!(s.mail_pending_count(ALICE).await?, 0);
    assert_eq!(s.mail_items_due(i64::MAX, 10).await?, []);
    // Found again in the mailbox: the same RefID, still removed.
    assert_eq!(
        s.add_mail_item(&imap_item(ALICE, 1)).await?,
        (pending, false)
    );
    assert_eq!(
        s.mail_item(ALICE, pending).await?.expect("p").state,
        "removed"
    );
    Ok(())
}

#[tokio::test]
async fn a_folder_lists_by_uid_without_removed_messages() -> anyhow::Result<()> {
    let f = two_users().await?;
    let s = &f.store;
    let (u5, _) = s.add_mail_item(&imap_item(ALICE, 5)).await?;
    let (u2, _) = s.add_mail_item(&imap_item(ALICE, 2)).await?;
    let (u9, _) = s.add_mail_item(&imap_item(ALICE, 9)).await?;
    let (gone, _) = s.add_mail_item(&imap_item(ALICE, 3)).await?;
    // Same UID under another UIDVALIDITY: by RefID after the first.
    let (u2b, _) = s
        .add_mail_item(&NewMailItem {
            source_key: "imap:8:2".into(),
            uid_validity: Some(8),
            ..imap_item(ALICE, 2)
        })
        .await?;
    // No UID (Maildir): last.
    let (nouid, _) = s
        .add_mail_item(&NewMailItem {
            source_key: "maildir:x".into(),
            uid_validity: None,
            uid: None,
            ..imap_item(ALICE, 0)
        })
        .await?;
    s.add_mail_item(&NewMailItem {
        folder: "Archive".into(),
        ..imap_item(ALICE, 1)
    })
    .await?;
    s.add_mail_item(&imap_item(BOB, 1)).await?;
    s.confirm_mail(ALICE, &[u9]).await?;
    s.forget_mail_item(gone).await?;
    s.set_mail_flags(u5, Some(true), None).await?;

    let list = s
        .mail_items_in_folder("Alice@Example.com", "INBOX", 100)
        .await?;
    let ids: Vec<i64> = list.iter().map(|r| r.ref_id).collect();
    assert_eq!(ids, [u2, u2b, u5, u9, nouid]);
    assert!(list.iter().all(|r| r.email == ALICE && r.folder == "INBOX"));
    assert!(list.iter().find(|r| r.ref_id == u5).is_some_and(|r| r.seen));
    // Over the limit: the newest (by RefID), still in UID order.
    let newest: Vec<i64> = s
        .mail_items_in_folder(ALICE, "INBOX", 2)
        .await?
        .iter()
        .map(|r| r.ref_id)
        .collect();
    assert_eq!(newest, [u2b, nouid]);
    assert_eq!(
        s.mail_items_in_folder(ALICE, "Archive", 100).await?.len(),
        1
    );
    assert_eq!(s.mail_items_in_folder(ALICE, "Trash", 100).await?, []);
    assert_eq!(
        s.mail_items_in_folder("nobody@example.com", "INBOX", 100)
            .await?,
        []
    );
    Ok(())
}

#[tokio::test]
async fn modseq_follows_its_uidvalidity() -> anyhow::Result<()> {
    let f = two_users().await?;
    let s = &f.store;
    let cursor = async |folder| s.mail_cursor(ALICE, folder).await;
    // No cursor yet: nothing recorded.
    assert!(!s.set_mail_modseq(ALICE, "INBOX", 7, 100).await?);
    assert_eq!(cursor("INBOX").await?, None);

    s.set_mail_cursor(ALICE, "INBOX", 7, 10).await?;
    assert!(
        !s.set_mail_modseq(ALICE, "INBOX", 6, 100).await?,
        "another UIDVALIDITY"
    );
    assert_eq!(cursor("INBOX").await?.and_then(|c| c.highest_modseq), None);
    assert!(
        s.set_mail_modseq("ALICE@example.com", "INBOX", 7, 100)
            .await?
    );
    assert_eq!(
        cursor("INBOX").await?,
        Some(MailCursor {
            uid_validity: 7,
            next_uid: 10,
            highest_modseq: Some(100)
        })
    );
    // Never back under one UIDVALIDITY.
    assert!(s.set_mail_modseq(ALICE, "INBOX", 7, 50).await?);
    assert_eq!(
        cursor("INBOX").await?.and_then(|c| c.highest_modseq),
        Some(100)
    );
    assert!(s.set_mail_modseq(ALICE, "INBOX", 7, 1 << 62).await?);
    assert_eq!(
        cursor("INBOX").await?.and_then(|c| c.highest_modseq),
        Some(1 << 62)
    );
    // Moving the UID cursor keeps it; a new UIDVALIDITY forgets it.
    s.set_mail_cursor(ALICE, "INBOX", 7, 20).await?;
    assert_eq!(
        cursor("INBOX").await?.and_then(|c| c.highest_modseq),
        Some(1 << 62)
    );
    s.set_mail_cursor(ALICE, "INBOX", 8, 1).await?;
    assert_eq!(
        cursor("INBOX").await?,
        Some(MailCursor {
            uid_validity: 8,
            next_uid: 1,
            highest_modseq: None
        })
    );
    assert!(s.set_mail_modseq(ALICE, "INBOX", 8, 3).await?);
    assert_eq!(
        cursor("INBOX").await?.and_then(|c| c.highest_modseq),
        Some(3)
    );
    // Per folder and user.
    assert_eq!(cursor("Archive").await?, None);
    assert_eq!(s.mail_cursor(BOB, "INBOX").await?, None);

    let err = s
        .set_mail_modseq(ALICE, "INBOX", 8, u64::MAX)
        .await
        .expect_err("too large");
    assert!(matches!(err, StoreError::OutOfRange { .. }));
    let err = s
        .set_mail_modseq("nobody@example.com", "INBOX", 8, 1)
        .await
        .expect_err("no such user");
    assert!(matches!(err, StoreError::NoSuchUser { .. }));
    Ok(())
}

#[tokio::test]
async fn the_change_queue_hands_out_oldest_first_until_finished() -> anyhow::Result<()> {
    let f = two_users().await?;
    let s = &f.store;
    let (a, _) = s.add_mail_item(&imap_item(ALICE, 1)).await?;
    let (b, _) = s.add_mail_item(&imap_item(BOB, 1)).await?;
    let before = bramble_store::now_ms();
    let c1 = s
        .enqueue_mail_change("Alice@example.com", a, b"read")
        .await?;
    let c2 = s.enqueue_mail_change(BOB, b, b"flag").await?;
    let c3 = s.enqueue_mail_change(ALICE, a, &[0, 255, 1]).await?;
    assert!(c1 < c2 && c2 < c3);

    let due = s.mail_changes_due(10).await?;
    let ids: Vec<i64> = due.iter().map(|c| c.id).collect();
    assert_eq!(ids, [c1, c2, c3]);
    assert_eq!(due[0].email, ALICE);
    assert_eq!(due[0].ref_id, a);
    assert_eq!(due[0].change, b"read");
    assert!(due[0].created_at >= before);
    assert_eq!((due[0].attempts, due[0].last_error.as_deref()), (0, None));
    assert_eq!(due[1].email, BOB);
    assert_eq!(due[2].change, [0, 255, 1]);
    assert_eq!(s.mail_changes_due(1).await?.len(), 1);

    // A failure keeps it queued, counted, with the error.
    assert!(
        s.retry_mail_change(c1, "NO [TRYCREATE] no such folder")
            .await?
    );
    assert!(s.retry_mail_change(c1, "BYE server going down").await?);
    let head = &s.mail_changes_due(1).await?[0];
    assert_eq!(head.id, c1);
    assert_eq!(head.attempts, 2);
    assert_eq!(head.last_error.as_deref(), Some("BYE server going down"));

    // Finished: gone, once.
    assert!(s.finish_mail_change(c1).await?);
    assert!(!s.finish_mail_change(c1).await?);
    assert!(!s.retry_mail_change(c1, "late").await?);
    let ids: Vec<i64> = s.mail_changes_due(10).await?.iter().map(|c| c.id).collect();
    assert_eq!(ids, [c2, c3]);

    // A forgotten message's changes stay queued: the agent decides what they mean.
    s.forget_mail_item(a).await?;
    assert_eq!(s.mail_changes_due(10).await?.len(), 2);

    // Only the user's own messages.
    let err = s
        .enqueue_mail_change(BOB, a, b"read")
        .await
        .expect_err("Alice's");
    assert!(matches!(err, StoreError::NoSuchMailItem { ref_id } if ref_id == a));
    let err = s
        .enqueue_mail_change(ALICE, 999_999, b"read")
        .await
        .expect_err("unknown");
    assert!(matches!(err, StoreError::NoSuchMailItem { .. }));
    let err = s
        .enqueue_mail_change("nobody@example.com", a, b"read")
        .await
        .expect_err("no such user");
    assert!(matches!(err, StoreError::NoSuchUser { .. }));
    Ok(())
}
