//! The synchronization service's tables: settings per user and group, collections and sync
//! tokens, what each side holds of each record, problems, wireless backups.

use bramble_store::{StoreError, SyncRecordRow, SyncSetting};

use crate::fixture;

const ALICE: &str = "alice@example.com";

fn setting(db: &str, enabled: bool, direction: &str, conflict: &str) -> SyncSetting {
    SyncSetting {
        database: db.into(),
        enabled,
        direction: direction.into(),
        conflict: conflict.into(),
    }
}

fn row(uid: &str, etag: Option<&str>, device: Option<&str>) -> SyncRecordRow {
    SyncRecordRow {
        uid: uid.into(),
        href: etag.map(|_| format!("/alice/contacts/{uid}.vcf")),
        etag: etag.map(str::to_owned),
        device_etag: device.map(str::to_owned),
        server_seen_at: 1,
        modified_ms: None,
    }
}

#[tokio::test]
async fn settings_records_problems_and_backups_round_trip() -> anyhow::Result<()> {
    let f = fixture().await?;
    let s = &f.store;
    s.add_user(ALICE, None).await?;
    s.add_group("Sales", None).await?;
    s.add_group_member("Sales", ALICE).await?;

    s.set_user_sync_setting(
        ALICE,
        &setting("contacts", true, "bidirectional", "device-wins"),
    )
    .await?;
    // Set twice: replaced, not doubled.
    s.set_user_sync_setting(
        ALICE,
        &setting("contacts", false, "bidirectional", "newest-wins"),
    )
    .await?;
    s.set_group_sync_setting(
        "sales",
        &setting("calendar", true, "server-to-device", "server-wins"),
    )
    .await?;
    assert!(matches!(
        s.set_user_sync_setting(
            ALICE,
            &setting("notes", true, "bidirectional", "server-wins")
        )
        .await,
        Err(StoreError::InvalidValue { .. })
    ));
    let c = s.sync_candidates(ALICE).await?;
    assert_eq!(
        c.user,
        [setting("contacts", false, "bidirectional", "newest-wins")]
    );
    assert_eq!(c.groups.len(), 1);
    assert_eq!(c.groups[0].0, "Sales");
    assert_eq!(c.groups[0].1[0].direction, "server-to-device");
    assert_eq!(s.clear_user_sync_setting(ALICE, None).await?, 1);

    assert_eq!(s.sync_collection(ALICE, "contacts").await?, None);
    s.set_sync_collection(ALICE, "contacts", "/alice/contacts/", Some("t1"))
        .await?;
    s.set_sync_collection(ALICE, "contacts", "/alice/contacts/", Some("t2"))
        .await?;
    assert_eq!(
        s.sync_collection(ALICE, "contacts").await?,
        Some(("/alice/contacts/".into(), Some("t2".into())))
    );

    let rows: Vec<SyncRecordRow> = (0..500)
        .map(|i| row(&format!("u{i:03}"), Some("e1"), Some("e1")))
        .collect();
    s.put_sync_records(ALICE, "contacts", &rows).await?;
    s.put_sync_records(
        ALICE,
        "contacts",
        &[
            row("u000", Some("e2"), Some("e1")),
            row("local", None, Some("d")),
        ],
    )
    .await?;
    let all = s.sync_records(ALICE, "contacts").await?;
    assert_eq!(all.len(), 501);
    assert_eq!(
        s.sync_record(ALICE, "contacts", "u000")
            .await?
            .and_then(|r| r.etag),
        Some("e2".into())
    );
    s.delete_sync_records(ALICE, "contacts", &["u001".into()])
        .await?;
    // A replacement device holds nothing: records only it had go, the rest lose device_etag.
    s.forget_device_records(ALICE).await?;
    let all = s.sync_records(ALICE, "contacts").await?;
    assert_eq!(all.len(), 499);
    assert!(all.iter().all(|r| r.device_etag.is_none()));

    for i in 0..205 {
        s.add_sync_problem(
            ALICE,
            "contacts",
            &format!("/x/{i}.vcf"),
            "server",
            "it has no UID",
        )
        .await?;
    }
    let p = s.sync_problems(ALICE, 1000).await?;
    assert_eq!(p.len(), 200, "only the newest 200 are kept");
    assert_eq!(p[0].item, "/x/204.vcf");

    assert!(s.put_device_backup(ALICE, 7, 200, b"sealed-new").await?);
    assert!(
        !s.put_device_backup(ALICE, 7, 100, b"sealed-old").await?,
        "an older backup does not replace a newer one"
    );
    let b = s.device_backup(ALICE).await?.expect("a backup");
    assert_eq!(
        (b.pin, b.taken_at, b.sealed.as_slice()),
        (7, 200, &b"sealed-new"[..])
    );
    Ok(())
}
