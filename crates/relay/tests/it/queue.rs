//! Frames for a device out of coverage: queued, delivered later (also across a restart),
//! expired, or refused when the queue is full — and the server told each time.

use std::time::Duration;

use bramble_proto::schema::{DeliveryStatus, RefusalReason};

use crate::support::{Client, Sessions, TestRelay, identity, status};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_wait_for_an_absent_device_also_across_a_restart() {
    let relay = TestRelay::start().await;
    let (srp, key) = relay.add_srp().await;
    let id = identity();
    let pin = id.pin();
    let mut keys = Sessions::new();
    let mut server = Client::server(relay.server_addr(), srp, &key)
        .await
        .expect("server logs in");

    // The device has never been seen: frames are queued, the server is told.
    let mut seqs = Vec::new();
    for i in 0..3 {
        let f = keys.seal_for_device(srp, pin, &format!("first {i}"));
        seqs.push(f.header.seq);
        server.send(f).await;
    }
    for (r, seq) in server.reports(3).await.iter().zip(&seqs) {
        assert_eq!(status(r), DeliveryStatus::Queued);
        assert_eq!((r.pin, r.seq), (pin.0, *seq));
        assert!(r.at_ms > 0);
    }

    // It comes into coverage: queued frames right after the welcome, oldest first.
    let mut device = Client::device(relay.device_addr(), &id)
        .await
        .expect("device logs in");
    assert_eq!(device.welcome.queued, 3);
    let mut got = Vec::new();
    for i in 0..3 {
        let f = device.sealed().await;
        assert_eq!(keys.open_at_device(&f), format!("first {i}"));
        got.push(f);
    }
    device.ack(&got.iter().collect::<Vec<_>>()).await;
    for (r, seq) in server.reports(3).await.iter().zip(&seqs) {
        assert_eq!(status(r), DeliveryStatus::Delivered);
        assert_eq!(r.seq, *seq);
    }
    device.close().await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Queued again, then the relay restarts on the same data dir and ports.
    let mut seqs = Vec::new();
    for i in 0..2 {
        let f = keys.seal_for_device(srp, pin, &format!("second {i}"));
        seqs.push(f.header.seq);
        server.send(f).await;
    }
    for r in server.reports(2).await {
        assert_eq!(status(&r), DeliveryStatus::Queued);
    }
    let relay = relay.restart().await;
    let (reason, _) = server.closed().await.expect("a refusal on shutdown");
    assert_eq!(reason, RefusalReason::Shutdown);

    let mut server = Client::server(relay.server_addr(), srp, &key)
        .await
        .expect("server logs in after the restart");
    let mut device = Client::device(relay.device_addr(), &id)
        .await
        .expect("device logs in after the restart");
    assert_eq!(device.welcome.queued, 2);
    let mut got = Vec::new();
    for i in 0..2 {
        let f = device.sealed().await;
        assert_eq!(keys.open_at_device(&f), format!("second {i}"));
        got.push(f);
    }
    device.ack(&got.iter().collect::<Vec<_>>()).await;
    for (r, seq) in server.reports(2).await.iter().zip(&seqs) {
        assert_eq!(status(r), DeliveryStatus::Delivered);
        assert_eq!(r.seq, *seq);
    }

    // Acked frames are gone from the queue.
    device.close().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let device = Client::device(relay.device_addr(), &id)
        .await
        .expect("device logs in");
    assert_eq!(device.welcome.queued, 0);
    relay.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_in_flight_at_shutdown_are_queued() {
    let relay = TestRelay::start().await;
    let (srp, key) = relay.add_srp().await;
    let id = identity();
    let pin = id.pin();
    let mut keys = Sessions::new();
    let mut server = Client::server(relay.server_addr(), srp, &key)
        .await
        .expect("server logs in");
    let mut device = Client::device(relay.device_addr(), &id)
        .await
        .expect("device logs in");
    server
        .send(keys.seal_for_device(srp, pin, "not acked"))
        .await;
    let f = device.sealed().await;
    assert_eq!(keys.open_at_device(&f), "not acked");
    // The device never acks; the relay stops.
    let relay = relay.restart().await;
    assert_eq!(
        device.closed().await.map(|(r, _)| r),
        Some(RefusalReason::Shutdown)
    );
    let mut device = Client::device(relay.device_addr(), &id)
        .await
        .expect("device logs in again");
    assert_eq!(device.welcome.queued, 1);
    let again = device.sealed().await;
    assert_eq!(again.header.seq, f.header.seq);
    relay.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_expire_and_the_server_is_told_even_after_reconnecting() {
    let relay = TestRelay::start_with(|c| {
        c.queue_expiry = Duration::from_secs(1);
        c.expiry_sweep = Duration::from_millis(100);
    })
    .await;
    let (srp, key) = relay.add_srp().await;
    let pin = identity().pin();
    let mut keys = Sessions::new();
    let mut server = Client::server(relay.server_addr(), srp, &key)
        .await
        .expect("server logs in");

    let f = keys.seal_for_device(srp, pin, "will expire");
    let seq = f.header.seq;
    server.send(f).await;
    let r = server.report().await;
    assert_eq!(status(&r), DeliveryStatus::Queued);
    let r = server.report().await;
    assert_eq!(status(&r), DeliveryStatus::Expired);
    assert_eq!((r.pin, r.seq), (pin.0, seq));
    assert!(r.detail.contains(&pin.to_string()), "{}", r.detail);

    // The server leaves; its frame expires meanwhile; the report waits for it.
    let f = keys.seal_for_device(srp, pin, "will expire too");
    let seq = f.header.seq;
    server.send(f).await;
    assert_eq!(status(&server.report().await), DeliveryStatus::Queued);
    server.close().await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let mut server = Client::server(relay.server_addr(), srp, &key)
        .await
        .expect("server logs in again");
    let r = server.report().await;
    assert_eq!(status(&r), DeliveryStatus::Expired);
    assert_eq!(r.seq, seq);
    relay.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_frames_and_says_so() {
    // By frames.
    let relay = TestRelay::start_with(|c| c.queue_max_frames = 3).await;
    let (srp, key) = relay.add_srp().await;
    let pin = identity().pin();
    let mut keys = Sessions::new();
    let mut server = Client::server(relay.server_addr(), srp, &key)
        .await
        .expect("server logs in");
    for i in 0..5 {
        server
            .send(keys.seal_for_device(srp, pin, &format!("frame {i}")))
            .await;
    }
    let got: Vec<_> = server.reports(5).await.iter().map(status).collect();
    assert_eq!(
        got,
        [
            DeliveryStatus::Queued,
            DeliveryStatus::Queued,
            DeliveryStatus::Queued,
            DeliveryStatus::QueueFull,
            DeliveryStatus::QueueFull
        ]
    );
    relay.handle.shutdown().await;

    // By bytes: each frame here is a little over 1 KiB on the wire.
    let relay = TestRelay::start_with(|c| c.queue_max_bytes = 2500).await;
    let (srp, key) = relay.add_srp().await;
    let mut server = Client::server(relay.server_addr(), srp, &key)
        .await
        .expect("server logs in");
    // Incompressible bytes, so the sealed frames keep their size.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: Vec<u8> = (0..1000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_be_bytes()[0]
        })
        .collect();
    let mut keys = Sessions::new();
    for _ in 0..3 {
        let f = keys
            .server
            .sealer
            .seal(
                bramble_proto::Address::Srp(srp),
                bramble_proto::Address::Pin(pin),
                &noise,
            )
            .expect("seals");
        assert!(f.encoded_len() > 1000, "{}", f.encoded_len());
        server.send(f).await;
    }
    let got: Vec<_> = server.reports(3).await.iter().map(status).collect();
    assert_eq!(
        got,
        [
            DeliveryStatus::Queued,
            DeliveryStatus::Queued,
            DeliveryStatus::QueueFull
        ]
    );
    relay.handle.shutdown().await;
}
