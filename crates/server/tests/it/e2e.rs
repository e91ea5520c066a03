//! Device ↔ relay ↔ server over TLS on loopback.

use std::time::Duration;

use bramble_device::Incoming;
use bramble_proto::schema::{self, Envelope, envelope::Body};
use bramble_proto::{MasterKey, Pin};
use bramble_server::ServerEvent;

use crate::support::{Result, World, wait_for};

fn ping(note: &str) -> Envelope {
    Envelope {
        version: 1,
        body: Some(Body::Ping(schema::Ping {
            note: note.into(),
            sent_at_ms: 0,
        })),
    }
}

async fn recv(conn: &mut bramble_device::Connection<'_>) -> Result<Incoming> {
    Ok(tokio::time::timeout(Duration::from_secs(10), conn.recv())
        .await
        .map_err(|_| "nothing arrived within 10 s")??)
}

#[tokio::test]
async fn ping_pong_both_ways_and_across_a_server_restart() -> Result {
    let mut w = World::start().await?;
    let mut device = w.device("alice@example.com").await?;
    let pin = device.pin();
    {
        let mut conn = device.connect().await?;
        let rtt = conn.ping("hello").await?;
        assert!(rtt < Duration::from_secs(5));

        // Server → device, answered by nobody: the device sees the ping.
        let seq = w
            .server()
            .dispatcher
            .send(pin, ping("from the server"))
            .await?;
        match recv(&mut conn).await? {
            Incoming::Envelope { seq: s, env } => {
                assert_eq!(s, seq);
                assert!(matches!(env.body, Some(Body::Ping(p)) if p.note == "from the server"));
            }
            other => panic!("expected the server's ping, got {other:?}"),
        }
        conn.close().await;
    }

    // The server restarts; its sequence numbers go on from its durable reservation, so the
    // device (whose replay window remembers the old ones) accepts what it sends next.
    w.restart_server().await?;
    let mut conn = device.connect().await?;
    let seq = w
        .server()
        .dispatcher
        .send(pin, ping("after restart"))
        .await?;
    match recv(&mut conn).await? {
        Incoming::Envelope { seq: s, .. } => assert_eq!(s, seq),
        other => panic!("expected the ping sent after the restart, got {other:?}"),
    }
    conn.ping("still there").await?;
    let user = w
        .server()
        .store()
        .user("alice@example.com")
        .await?
        .expect("user");
    assert_eq!(user.email, "alice@example.com");
    let stats = w.server().store().stats("global").await?;
    assert!(
        stats.iter().any(|(k, v)| k == "frames_received" && *v >= 2),
        "{stats:?}"
    );
    conn.close().await;
    w.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn offline_device_gets_queued_frames_and_the_server_hears_of_delivery() -> Result {
    let w = World::start().await?;
    let mut device = w.device("bob@example.com").await?;
    let pin = device.pin();
    let mut events = w.server().events();
    let seq = w
        .server()
        .dispatcher
        .send(pin, ping("while you were away"))
        .await?;
    wait_for(&mut events, "QUEUED", |e| matches!(e, ServerEvent::Delivery { pin: p, seq: s, status: "queued" } if *p == pin && *s == seq)).await?;

    let mut conn = device.connect().await?;
    assert_eq!(conn.queued_at_login(), 1);
    assert!(matches!(recv(&mut conn).await?, Incoming::Envelope { seq: s, .. } if s == seq));
    wait_for(&mut events, "DELIVERED", |e| matches!(e, ServerEvent::Delivery { pin: p, seq: s, status: "delivered" } if *p == pin && *s == seq)).await?;
    conn.close().await;
    w.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_device_with_the_wrong_key_is_told_and_nothing_is_delivered() -> Result {
    let w = World::start().await?;
    let mut device = w.device("carol@example.com").await?;
    let pin: Pin = device.pin();
    // The device now holds a key the server never saw.
    device.provision(w.srp, MasterKey::generate()?)?;
    let mut events = w.server().events();
    let mut conn = device.connect().await?;
    conn.send(&ping("sealed with a key the server does not have"))
        .await?;
    wait_for(
        &mut events,
        "the rejection",
        |e| matches!(e, ServerEvent::Rejected { pin: p, .. } if *p == pin),
    )
    .await?;
    // The server's error report is sealed with the key it holds, which this device cannot open.
    assert!(matches!(recv(&mut conn).await?, Incoming::Rejected { .. }));
    conn.close().await;
    w.shutdown().await;
    Ok(())
}
