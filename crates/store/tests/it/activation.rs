//! Activation passwords as OPAQUE records.

use bramble_store::{StoreError, now_ms};

use crate::{fixture, new_device};

#[tokio::test]
async fn set_replace_count_clear() -> anyhow::Result<()> {
    let f = fixture().await?;
    let s = &f.store;
    s.add_user("frank@example.com", None).await?;
    assert!(s.activation("frank@example.com").await?.is_none());

    let expires = now_ms() + 48 * 3600 * 1000;
    let record: Vec<u8> = (0..192u8).collect();
    s.set_activation("Frank@example.com", &record, expires, 5)
        .await?;
    let a = s.activation("frank@example.com").await?.expect("set");
    assert_eq!(a.record, record);
    assert_eq!(
        (a.expires_at_ms, a.failed_attempts, a.max_attempts),
        (expires, 0, 5)
    );
    assert!(a.created_at_ms <= now_ms());
    assert!(
        // The record's bytes, as Debug would list them (a bare "191" also turns up in
        // timestamps: 1796191120306 failed this on 2026-12-02).
        !format!("{a:?}").contains("189, 190, 191"),
        "Debug prints the record: {a:?}"
    );
    assert!(
        s.user("frank@example.com")
            .await?
            .expect("frank")
            .has_activation_password
    );

    assert_eq!(s.count_failed_activation("frank@example.com").await?, 1);
    assert_eq!(s.count_failed_activation("FRANK@example.com").await?, 2);
    assert_eq!(
        s.activation("frank@example.com")
            .await?
            .expect("set")
            .failed_attempts,
        2
    );

    // A new password replaces the record and starts the count again.
    s.set_activation("frank@example.com", b"another record", expires + 1, 3)
        .await?;
    let a = s.activation("frank@example.com").await?.expect("replaced");
    assert_eq!(a.record, b"another record");
    assert_eq!(
        (a.expires_at_ms, a.failed_attempts, a.max_attempts),
        (expires + 1, 0, 3)
    );

    s.clear_activation("frank@example.com").await?;
    assert!(s.activation("frank@example.com").await?.is_none());
    assert!(
        !s.user("frank@example.com")
            .await?
            .expect("frank")
            .has_activation_password
    );
    s.clear_activation("frank@example.com").await?; // nothing to clear: fine
    let err = s
        .count_failed_activation("frank@example.com")
        .await
        .expect_err("cleared");
    assert!(matches!(err, StoreError::NoActivation { .. }), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn concurrent_failures_are_each_counted() -> anyhow::Result<()> {
    let f = fixture().await?;
    f.store.add_user("grace@example.com", None).await?;
    f.store
        .set_activation("grace@example.com", b"r", now_ms() + 60_000, 100)
        .await?;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let store = f.store.clone();
        tasks.spawn(async move { store.count_failed_activation("grace@example.com").await });
    }
    let mut counts = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        counts.push(joined??);
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=10).collect::<Vec<u32>>());
    Ok(())
}

#[tokio::test]
async fn the_password_is_spent_with_the_device_stored_once() -> anyhow::Result<()> {
    let f = fixture().await?;
    let s = &f.store;
    s.add_user("hugo@example.com", None).await?;
    s.set_activation("hugo@example.com", b"r", now_ms() + 60_000, 5)
        .await?;
    // two devices proved the one password at once: one is stored, the other refused
    let mut tasks = tokio::task::JoinSet::new();
    for pin in [0x2200_0001u32, 0x2200_0002] {
        let store = s.clone();
        tasks.spawn(async move {
            store
                .activate_device(&new_device("hugo@example.com", pin))
                .await
        });
    }
    let mut stored = Vec::new();
    let mut refused = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined? {
            Ok(d) => stored.push(d.pin),
            Err(StoreError::NoActivation { email }) => {
                assert_eq!(email, "hugo@example.com");
                refused += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    assert_eq!((stored.len(), refused), (1, 1), "{stored:?}");
    assert!(
        s.activation("hugo@example.com").await?.is_none(),
        "not spent"
    );
    let device = s
        .device_for_user("hugo@example.com")
        .await?
        .expect("device");
    assert_eq!(device.pin, stored[0]);
    assert_eq!(device.key_generation, 1);

    // an unknown user is still reported as such, and nothing is spent for a PIN in use
    let err = s
        .activate_device(&new_device("nobody@example.com", 0x2200_0003))
        .await
        .expect_err("no user");
    assert!(matches!(err, StoreError::NoSuchUser { .. }), "{err:?}");
    s.add_user("ida@example.com", None).await?;
    s.set_activation("ida@example.com", b"r", now_ms() + 60_000, 5)
        .await?;
    let err = s
        .activate_device(&new_device("ida@example.com", device.pin))
        .await
        .expect_err("PIN in use");
    assert!(matches!(err, StoreError::PinInUse { .. }), "{err:?}");
    assert!(s.activation("ida@example.com").await?.is_some(), "spent");
    Ok(())
}

#[tokio::test]
async fn unknown_user_is_reported() -> anyhow::Result<()> {
    let f = fixture().await?;
    let s = &f.store;
    let err = s
        .set_activation("nobody@example.com", b"r", 0, 5)
        .await
        .expect_err("no user");
    assert!(matches!(err, StoreError::NoSuchUser { .. }), "{err:?}");
    let err = s
        .count_failed_activation("nobody@example.com")
        .await
        .expect_err("no user");
    assert!(matches!(err, StoreError::NoSuchUser { .. }), "{err:?}");
    let err = s
        .clear_activation("nobody@example.com")
        .await
        .expect_err("no user");
    assert!(matches!(err, StoreError::NoSuchUser { .. }), "{err:?}");
    assert!(s.activation("nobody@example.com").await?.is_none());
    Ok(())
}
