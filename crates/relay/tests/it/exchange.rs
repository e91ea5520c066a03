//! Sealed frames both ways; the relay never sees (nor logs, nor stores) a payload.

use bramble_proto::Address;
use bramble_proto::schema::DeliveryStatus;
use futures::{SinkExt, StreamExt};

use crate::support::{Client, Sessions, TestRelay, identity, logs_text, status};

const MARKER: &str = "MARKER-7f3a9c2e51d04b8a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_frames_cross_both_ways_and_payloads_never_show() {
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
    assert_eq!(device.welcome.queued, 0);
    assert_eq!(device.welcome.max_frame_len, 1 << 20);

    // Server to device, then the DELIVERED report once the device acks.
    let text = format!("mail for you {MARKER} server->device");
    server.send(keys.seal_for_device(srp, pin, &text)).await;
    let got = device.sealed().await;
    assert_eq!(got.header.src, Address::Srp(srp));
    assert_eq!(keys.open_at_device(&got), text);
    device.ack(&[&got]).await;
    let r = server.report().await;
    assert_eq!(status(&r), DeliveryStatus::Delivered);
    assert_eq!((r.pin, r.seq), (pin.0, got.header.seq));

    // Device to server, acked by PIN.
    let text = format!("reply {MARKER} device->server");
    device.send(keys.seal_for_server(pin, srp, &text)).await;
    let got = server.sealed().await;
    assert_eq!(got.header.src, Address::Pin(pin));
    assert_eq!(keys.open_at_server(&got), text);
    server.ack(&[&got]).await;

    // A keepalive from an endpoint is answered with the same nonce.
    device
        .send(bramble_proto::Frame::control(
            Address::Pin(pin),
            Address::Relay,
            &bramble_proto::schema::Control {
                msg: Some(bramble_proto::schema::control::Msg::Keepalive(
                    bramble_proto::schema::Keepalive {
                        nonce: 77,
                        reply: false,
                    },
                )),
            },
        ))
        .await;
    match device.event().await {
        crate::support::Event::Control(bramble_proto::schema::control::Msg::Keepalive(k)) => {
            assert_eq!((k.nonce, k.reply), (77, true));
        }
        other => panic!("expected a keepalive answer, got {other:?}"),
    }

    // The device goes away; what the server sends now is queued on disk.
    device.close().await;
    for i in 0..3 {
        server
            .send(keys.seal_for_device(srp, pin, &format!("queued {i} {MARKER}")))
            .await;
    }
    let reports = server.reports(3).await;
    assert!(
        reports.iter().all(|r| status(r) == DeliveryStatus::Queued),
        "{reports:?}"
    );

    // Neither the database (nor its WAL) nor the logs hold a payload.
    for name in ["relay.db", "relay.db-wal", "relay.db-shm"] {
        let path = relay.data_dir().join(name);
        if let Ok(bytes) = std::fs::read(&path) {
            assert!(
                !bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()),
                "{name} holds a payload"
            );
        }
    }
    let logs = logs_text();
    assert!(
        logs.contains(&pin.to_string()),
        "the capture sees the relay's logs"
    );
    assert!(logs.contains("logged in"));
    assert!(!logs.contains(MARKER), "the logs hold a payload");

    // The queued frames are there all the same.
    let mut device = Client::device(relay.device_addr(), &id)
        .await
        .expect("device logs in again");
    assert_eq!(device.welcome.queued, 3);
    // (A frame sent while the relay had not yet noticed the device leave comes back from
    // flight behind the others; sequence numbers put it right.)
    let mut texts = Vec::new();
    for _ in 0..3 {
        let f = device.sealed().await;
        texts.push(keys.open_at_device(&f));
    }
    texts.sort();
    assert_eq!(
        texts,
        (0..3)
            .map(|i| format!("queued {i} {MARKER}"))
            .collect::<Vec<_>>()
    );
    relay.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_does_not_ack_gets_at_most_a_window_then_the_rest() {
    // Room on disk for everything that does not go out at once.
    let relay = TestRelay::start_with(|c| c.queue_max_frames = 5000).await;
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

    const N: usize = 1500;
    let frames: Vec<_> = (0..N)
        .map(|i| keys.seal_for_device(srp, pin, &format!("n{i}")))
        .collect();
    for f in frames {
        server.framed.feed(f).await.expect("feeds");
    }
    futures::SinkExt::<bramble_proto::Frame>::flush(&mut server.framed)
        .await
        .expect("flushes");

    // Without acks, the relay stops at its window (1024 in flight, plus what was already
    // handed to the connection's writer).
    let mut got = Vec::new();
    while let Ok(Some(Ok(f))) =
        tokio::time::timeout(std::time::Duration::from_millis(700), device.framed.next()).await
    {
        got.push(f);
    }
    assert!(got.len() >= 1024, "{}", got.len());
    assert!(got.len() < N, "{}", got.len());

    // Acks open the window; the rest follows, from the disk queue.
    device.ack(&got.iter().collect::<Vec<_>>()).await;
    let mut unacked = Vec::new();
    while got.len() + unacked.len() < N {
        match device.event().await {
            crate::support::Event::Sealed(f) => unacked.push(f),
            other => panic!(
                "after {} frames ({} acked): {other:?}",
                got.len() + unacked.len(),
                got.len()
            ),
        }
        if unacked.len() == 100 || got.len() + unacked.len() == N {
            device.ack(&unacked.iter().collect::<Vec<_>>()).await;
            got.append(&mut unacked);
        }
    }
    let mut seqs: Vec<u64> = got.iter().map(|f| f.header.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), N, "every frame once");
    for f in &got {
        keys.open_at_device(f);
    }

    // The server hears DELIVERED for each, and no QUEUED: the device was there throughout.
    let reports = server.reports(N).await;
    assert!(
        reports
            .iter()
            .all(|r| status(r) == DeliveryStatus::Delivered)
    );
    let mut seqs: Vec<u64> = reports.iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), N);
    relay.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_reconnects_replaces_its_old_connection() {
    let relay = TestRelay::start().await;
    let (srp, key) = relay.add_srp().await;
    let id = identity();
    let pin = id.pin();
    let mut keys = Sessions::new();
    let mut server = Client::server(relay.server_addr(), srp, &key)
        .await
        .expect("server logs in");
    let mut old = Client::device(relay.device_addr(), &id)
        .await
        .expect("device logs in");
    server.send(keys.seal_for_device(srp, pin, "unacked")).await;
    let f = old.sealed().await;

    // The phone changed networks: a new connection, while the old one still looks open.
    let mut new = Client::device(relay.device_addr(), &id)
        .await
        .expect("device logs in again");
    assert_eq!(old.closed().await, None, "closed without a refusal");
    let again = new.sealed().await;
    assert_eq!(again.header.seq, f.header.seq);
    assert_eq!(keys.open_at_device(&again), "unacked");
    new.ack(&[&again]).await;
    let reports = server.reports(1).await;
    assert_eq!(status(&reports[0]), DeliveryStatus::Delivered);

    // And the new connection carries traffic.
    server.send(keys.seal_for_device(srp, pin, "next")).await;
    let f = new.sealed().await;
    assert_eq!(keys.open_at_device(&f), "next");
    relay.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_probed_then_closed() {
    let relay =
        TestRelay::start_with(|c| c.keepalive = std::time::Duration::from_millis(200)).await;
    let id = identity();
    let mut device = Client::device(relay.device_addr(), &id)
        .await
        .expect("device logs in");
    // `event` answers keepalives: the connection stays.
    let quiet = tokio::time::timeout(std::time::Duration::from_millis(800), device.event()).await;
    assert!(quiet.is_err(), "nothing but keepalives: {quiet:?}");

    // A peer that reads nothing and answers nothing is closed after two intervals.
    let silent = Client::device(relay.device_addr(), &identity())
        .await
        .expect("device logs in");
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let mut silent = silent;
    let mut saw_keepalive = false;
    while let Some(Ok(f)) = silent.framed.next().await {
        if let Ok(bramble_proto::schema::Control {
            msg: Some(bramble_proto::schema::control::Msg::Keepalive(k)),
        }) = f.to_control()
        {
            assert!(!k.reply);
            saw_keepalive = true;
        }
    }
    assert!(saw_keepalive);
    relay.handle.shutdown().await;
}
