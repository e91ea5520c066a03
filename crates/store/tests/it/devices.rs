//! Devices: activation and re-activation, PINs, keys, sequence numbers.

use std::collections::BTreeSet;

use bramble_store::{StoreError, now_ms};

use crate::{fixture, new_device};

const PIN_A: u32 = 0x2100_000A;
const PIN_B: u32 = 0x2100_000B;
const PIN_C: u32 = 0x2100_000C;

#[tokio::test]
async fn put_and_find() -> anyhow::Result<()> {
    let f = fixture().await?;
    let s = &f.store;
    s.add_user("heidi@example.com", None).await?;
    let before = now_ms();
    let put = s
        .put_device(&new_device("Heidi@Example.com", PIN_A))
        .await?;
    assert_eq!(put.email, "heidi@example.com");
    assert_eq!((put.pin, put.key_generation), (PIN_A, 1));
    assert_eq!(
        (put.tx_seq_reserved, put.rx_seq_highest, put.last_seen_ms),
        (0, 0, None)
    );
    assert!(put.activated_at_ms >= before);

    let by_pin = s.device_by_pin(PIN_A).await?.expect("by PIN");
    let by_user = s
        .device_for_user("HEIDI@example.com")
        .await?
        .expect("by user");
    for d in [&by_pin, &by_user] {
        assert_eq!(d.email, put.email);
        assert_eq!(d.pin, PIN_A);
        assert_eq!(d.identity_key, put.identity_key);
        assert_eq!(d.master_key, put.master_key);
        assert_eq!(d.activated_at_ms, put.activated_at_ms);
    }
    assert!(s.device_by_pin(PIN_B).await?.is_none());
    assert!(s.device_for_user("nobody@example.com").await?.is_none());

    let shown = format!("{by_pin:?}");
    assert!(shown.contains("2100000A"), "{shown}");
    assert!(shown.contains("redacted"), "{shown}");
    assert!(
        !shown.contains("0a000021"),
        "Debug prints the master key: {shown}"
    );

    let err = s
        .put_device(&new_device("nobody@example.com", PIN_C))
        .await
        .expect_err("no user");
    assert!(matches!(err, StoreError::NoSuchUser { .. }), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn reactivation_replaces_the_previous_device() -> anyhow::Result<()> {
    let f = fixture().await?;
    let s = &f.store;
    s.add_user("ivan@example.com", None).await?;
    s.put_device(&new_device("ivan@example.com", PIN_A)).await?;
    s.reserve_tx_seq(PIN_A, 10).await?;
    s.raise_rx_seq(PIN_A, 7).await?;

    // A new handheld.
    let second = s.put_device(&new_device("ivan@example.com", PIN_B)).await?;
    assert_eq!(second.key_generation, 2);
    assert!(
        s.device_by_pin(PIN_A).await?.is_none(),
        "old device still there"
    );
    let current = s
        .device_for_user("ivan@example.com")
        .await?
        .expect("current");
    assert_eq!(current.pin, PIN_B);
    assert_eq!((current.tx_seq_reserved, current.rx_seq_highest), (0, 0));
    assert_eq!(s.list_devices().await?.len(), 1);

    // The same handheld again (new keys, same PIN).
    let mut same = new_device("ivan@example.com", PIN_B);
    same.master_key = vec![7; 32];
    let third = s.put_device(&same).await?;
    assert_eq!(third.key_generation, 3);
    let current = s.device_by_pin(PIN_B).await?.expect("current");
    assert_eq!(current.master_key, vec![7; 32]);
    Ok(())
}

#[tokio::test]
async fn another_users_pin_is_refused() -> anyhow::Result<()> {
    let f = fixture().await?;
    let s = &f.store;
    s.add_user("judy@example.com", None).await?;
    s.add_user("mallory@example.com", None).await?;
    s.put_device(&new_device("judy@example.com", PIN_A)).await?;
    s.put_device(&new_device("mallory@example.com", PIN_B))
        .await?;

    let err = s
        .put_device(&new_device("mallory@example.com", PIN_A))
        .await
        .expect_err("Judy's PIN");
    assert!(
        matches!(&err, StoreError::PinInUse { pin: PIN_A, email } if email == "judy@example.com"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "PIN 2100000A already belongs to the device of judy@example.com"
    );
    // Nothing changed: Judy keeps hers, Mallory keeps hers.
    assert_eq!(
        s.device_by_pin(PIN_A).await?.expect("judy's").email,
        "judy@example.com"
    );
    assert_eq!(
        s.device_by_pin(PIN_B).await?.expect("mallory's").email,
        "mallory@example.com"
    );

    let listed: Vec<(String, u32)> = s
        .list_devices()
        .await?
        .into_iter()
        .map(|d| (d.email, d.pin))
        .collect();
    assert_eq!(
        listed,
        [
            ("judy@example.com".to_owned(), PIN_A),
            ("mallory@example.com".to_owned(), PIN_B)
        ]
    );
    Ok(())
}

#[tokio::test]
async fn extreme_pins_round_trip() -> anyhow::Result<()> {
    let f = fixture().await?;
    let s = &f.store;
    s.add_user("min@example.com", None).await?;
    s.add_user("max@example.com", None).await?;
    s.put_device(&new_device("min@example.com", 0)).await?;
    s.put_device(&new_device("max@example.com", u32::MAX))
        .await?;
    assert_eq!(
        s.device_by_pin(u32::MAX).await?.expect("max").email,
        "max@example.com"
    );
    assert_eq!(
        s.device_by_pin(0).await?.expect("min").email,
        "min@example.com"
    );
    Ok(())
}

#[tokio::test]
async fn tx_seq_ranges_follow_on() -> anyhow::Result<()> {
    let f = fixture().await?;
    let s = &f.store;
    s.add_user("ken@example.com", None).await?;
    s.put_device(&new_device("ken@example.com", PIN_A)).await?;
    assert_eq!(s.reserve_tx_seq(PIN_A, 10).await?, 1..11);
    assert_eq!(s.reserve_tx_seq(PIN_A, 5).await?, 11..16);
    assert_eq!(s.reserve_tx_seq(PIN_A, 0).await?, 16..16);
    assert_eq!(s.reserve_tx_seq(PIN_A, 1).await?, 16..17);
    assert_eq!(
        s.device_by_pin(PIN_A)
            .await?
            .expect("ken's")
            .tx_seq_reserved,
        16
    );

    let err = s.reserve_tx_seq(PIN_B, 1).await.expect_err("no device");
    assert!(
        matches!(err, StoreError::NoSuchDevice { pin: PIN_B }),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "no device with PIN 2100000B");
    let err = s
        .reserve_tx_seq(PIN_A, u64::MAX)
        .await
        .expect_err("too many");
    assert!(matches!(err, StoreError::OutOfRange { .. }), "{err:?}");

    // Up to the last number the database holds, then no further.
    let top = u64::try_from(i64::MAX)?;
    assert_eq!(s.reserve_tx_seq(PIN_A, top - 16).await?, 17..top + 1);
    let err = s.reserve_tx_seq(PIN_A, 1).await.expect_err("exhausted");
    assert!(
        matches!(err, StoreError::SequenceExhausted { pin: PIN_A }),
        "{err:?}"
    );
    assert_eq!(
        s.device_by_pin(PIN_A)
            .await?
            .expect("ken's")
            .tx_seq_reserved,
        top
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reservations_are_disjoint() -> anyhow::Result<()> {
    let f = fixture().await?;
    f.store.add_user("leo@example.com", None).await?;
    f.store
        .put_device(&new_device("leo@example.com", PIN_A))
        .await?;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let store = f.store.clone();
        tasks.spawn(async move {
            let mut ranges = Vec::new();
            for _ in 0..5 {
                ranges.push(store.reserve_tx_seq(PIN_A, 5).await?);
            }
            Ok::<_, StoreError>(ranges)
        });
    }
    let mut seen = BTreeSet::new();
    let mut total = 0;
    while let Some(joined) = tasks.join_next().await {
        let ranges = joined??;
        // Each task's own ranges increase.
        assert!(
            ranges.windows(2).all(|w| w[0].end <= w[1].start),
            "{ranges:?}"
        );
        for r in ranges {
            assert_eq!(r.end - r.start, 5);
            for n in r {
                assert!(seen.insert(n), "sequence number {n} handed out twice");
                total += 1;
            }
        }
    }
    assert_eq!(total, 500);
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        (1..=500).collect::<Vec<u64>>()
    );
    assert_eq!(
        f.store
            .device_by_pin(PIN_A)
            .await?
            .expect("leo's")
            .tx_seq_reserved,
        500
    );
    Ok(())
}

#[tokio::test]
async fn rx_seq_never_goes_down() -> anyhow::Result<()> {
    let f = fixture().await?;
    let s = &f.store;
    s.add_user("mike@example.com", None).await?;
    s.put_device(&new_device("mike@example.com", PIN_A)).await?;
    let highest = |d: Option<bramble_store::Device>| d.map(|d| d.rx_seq_highest);

    s.raise_rx_seq(PIN_A, 10).await?;
    assert_eq!(highest(s.device_by_pin(PIN_A).await?), Some(10));
    s.raise_rx_seq(PIN_A, 3).await?;
    assert_eq!(highest(s.device_by_pin(PIN_A).await?), Some(10));
    s.raise_rx_seq(PIN_A, 11).await?;
    assert_eq!(highest(s.device_by_pin(PIN_A).await?), Some(11));

    assert!(s.accept_rx_seq(PIN_A, 12).await?);
    assert!(!s.accept_rx_seq(PIN_A, 12).await?, "replay accepted");
    assert!(!s.accept_rx_seq(PIN_A, 5).await?, "old number accepted");
    assert_eq!(highest(s.device_by_pin(PIN_A).await?), Some(12));

    let err = s.raise_rx_seq(PIN_B, 1).await.expect_err("no device");
    assert!(matches!(err, StoreError::NoSuchDevice { .. }), "{err:?}");
    let err = s.accept_rx_seq(PIN_B, 1).await.expect_err("no device");
    assert!(matches!(err, StoreError::NoSuchDevice { .. }), "{err:?}");
    let err = s
        .raise_rx_seq(PIN_A, u64::MAX)
        .await
        .expect_err("too large");
    assert!(matches!(err, StoreError::OutOfRange { .. }), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn a_frame_received_is_recorded_in_one_step() -> anyhow::Result<()> {
    let f = fixture().await?;
    let s = &f.store;
    s.add_user("otto@example.com", None).await?;
    s.put_device(&new_device("otto@example.com", PIN_A)).await?;
    let seen = |d: Option<bramble_store::Device>| d.map(|d| (d.rx_seq_highest, d.last_seen_ms));
    let counters = [
        ("global", "frames_received", 1),
        ("Otto@Example.com", "frames_received", 1),
    ];

    s.record_frame_received(PIN_A, 10, 1_000, &counters).await?;
    assert_eq!(seen(s.device_by_pin(PIN_A).await?), Some((10, Some(1_000))));
    // neither the number nor the time goes back; the counters still count
    s.record_frame_received(PIN_A, 4, 500, &counters).await?;
    assert_eq!(seen(s.device_by_pin(PIN_A).await?), Some((10, Some(1_000))));
    s.record_frame_received(PIN_A, 11, 2_000, &[]).await?;
    assert_eq!(seen(s.device_by_pin(PIN_A).await?), Some((11, Some(2_000))));
    let stats: std::collections::HashMap<String, i64> =
        s.stats("otto@example.com").await?.into_iter().collect();
    assert_eq!(stats.get("frames_received"), Some(&2), "{stats:?}");

    // no such device: an error, and no counter moved
    let err = s
        .record_frame_received(PIN_B, 1, 1, &counters)
        .await
        .expect_err("no device");
    assert!(matches!(err, StoreError::NoSuchDevice { .. }), "{err:?}");
    let global: std::collections::HashMap<String, i64> =
        s.stats("global").await?.into_iter().collect();
    assert_eq!(global.get("frames_received"), Some(&2), "{global:?}");
    let err = s
        .record_frame_received(PIN_A, u64::MAX, 1, &counters)
        .await
        .expect_err("too large");
    assert!(matches!(err, StoreError::OutOfRange { .. }), "{err:?}");

    // several counters in one commit
    s.bump_stats(&[
        ("global", "delivered", 3),
        ("otto@example.com", "delivered", 3),
    ])
    .await?;
    s.bump_stats(&[]).await?;
    // the same counter twice, and three at once
    s.bump_stats(&[
        ("Otto@example.com", "delivered", 1),
        ("otto@example.com", "delivered", 1),
    ])
    .await?;
    s.bump_stats(&[
        ("global", "delivered", 1),
        ("otto@example.com", "delivered", 1),
        ("otto@example.com", "expired", 1),
    ])
    .await?;
    let stats: std::collections::HashMap<String, i64> =
        s.stats("otto@example.com").await?.into_iter().collect();
    assert_eq!(stats.get("delivered"), Some(&6), "{stats:?}");
    assert_eq!(stats.get("expired"), Some(&1), "{stats:?}");
    let global: std::collections::HashMap<String, i64> =
        s.stats("global").await?.into_iter().collect();
    assert_eq!(global.get("delivered"), Some(&4), "{global:?}");
    Ok(())
}

#[tokio::test]
async fn touch_rotate_delete() -> anyhow::Result<()> {
    let f = fixture().await?;
    let s = &f.store;
    s.add_user("nina@example.com", None).await?;
    s.put_device(&new_device("nina@example.com", PIN_A)).await?;

    s.touch_device(PIN_A, 1_000).await?;
    assert_eq!(
        s.device_by_pin(PIN_A).await?.and_then(|d| d.last_seen_ms),
        Some(1_000)
    );
    s.touch_device(PIN_A, 500).await?;
    assert_eq!(
        s.device_by_pin(PIN_A).await?.and_then(|d| d.last_seen_ms),
        Some(1_000)
    );
    s.touch_device(PIN_A, 2_000).await?;
    assert_eq!(
        s.device_by_pin(PIN_A).await?.and_then(|d| d.last_seen_ms),
        Some(2_000)
    );
    let err = s.touch_device(PIN_B, 1).await.expect_err("no device");
    assert!(matches!(err, StoreError::NoSuchDevice { .. }), "{err:?}");

    s.reserve_tx_seq(PIN_A, 4).await?;
    assert_eq!(s.rotate_master_key(PIN_A, &[9; 32]).await?, 2);
    let d = s.device_by_pin(PIN_A).await?.expect("nina's");
    assert_eq!(
        (d.master_key, d.key_generation, d.tx_seq_reserved),
        (vec![9; 32], 2, 4)
    );
    let err = s
        .rotate_master_key(PIN_B, &[1])
        .await
        .expect_err("no device");
    assert!(matches!(err, StoreError::NoSuchDevice { .. }), "{err:?}");

    assert!(s.delete_device(PIN_A).await?);
    assert!(!s.delete_device(PIN_A).await?);
    assert!(s.device_for_user("nina@example.com").await?.is_none());
    assert!(
        s.user("nina@example.com").await?.is_some(),
        "user went with the device"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_activations_for_one_pin_leave_one_winner() -> anyhow::Result<()> {
    let f = fixture().await?;
    let users: Vec<String> = (0..10).map(|i| format!("racer{i}@example.com")).collect();
    for u in &users {
        f.store.add_user(u, None).await?;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for u in users {
        let store = f.store.clone();
        tasks.spawn(async move { store.put_device(&new_device(&u, PIN_A)).await });
    }
    let (mut won, mut refused) = (Vec::new(), 0);
    while let Some(joined) = tasks.join_next().await {
        match joined? {
            Ok(d) => won.push(d.email),
            Err(StoreError::PinInUse { pin: PIN_A, email }) => {
                assert!(email.starts_with("racer"), "{email}");
                refused += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    assert_eq!((won.len(), refused), (1, 9), "winners: {won:?}");
    assert_eq!(
        f.store.device_by_pin(PIN_A).await?.map(|d| d.email),
        won.pop()
    );
    assert_eq!(f.store.list_devices().await?.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_reactivations_of_one_user_leave_one_device() -> anyhow::Result<()> {
    let f = fixture().await?;
    f.store.add_user("quinn@example.com", None).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for pin in 1..=10u32 {
        let store = f.store.clone();
        tasks.spawn(async move {
            store
                .put_device(&new_device("quinn@example.com", pin))
                .await
        });
    }
    let mut generations = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        generations.push(joined??.key_generation);
    }
    generations.sort_unstable();
    assert_eq!(generations, (1..=10).collect::<Vec<u32>>());
    let devices = f.store.list_devices().await?;
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].key_generation, 10);
    Ok(())
}
