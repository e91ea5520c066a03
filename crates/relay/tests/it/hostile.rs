//! Lies and garbage: each closes only the connection that sent it.

use std::time::Duration;

use bramble_proto::schema::{self, RefusalReason, control::Msg};
use bramble_proto::{Address, Frame, FrameKind, Header, Pin};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Client, Sessions, TestRelay, identity, tls_connect};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_must_prove_their_pin() {
    let relay = TestRelay::start().await;
    let me = identity();
    let thief = identity();

    // The thief claims my PIN with its own key (and a good signature of its own).
    let e = Client::login(
        relay.device_addr(),
        Address::Pin(me.pin()),
        |nonce, binding| {
            Msg::DeviceHello(schema::DeviceHello {
                pin: me.pin().0,
                identity_key: thief.public_key().to_vec().into(),
                signature: thief.prove(nonce, binding).expect("signs").into(),
                agent: "thief".into(),
            })
        },
    )
    .await
    .err()
    .expect("refused");
    assert_eq!(e.reason(), Some(RefusalReason::PinMismatch), "{e:?}");

    // My PIN and my public key, but a signature the thief made.
    let e = Client::login(
        relay.device_addr(),
        Address::Pin(me.pin()),
        |nonce, binding| {
            Msg::DeviceHello(schema::DeviceHello {
                pin: me.pin().0,
                identity_key: me.public_key().to_vec().into(),
                signature: thief.prove(nonce, binding).expect("signs").into(),
                agent: "thief".into(),
            })
        },
    )
    .await
    .err()
    .expect("refused");
    assert_eq!(e.reason(), Some(RefusalReason::BadProof), "{e:?}");

    // A signature over another connection's channel binding does not verify either.
    let e = Client::login(relay.device_addr(), Address::Pin(me.pin()), |nonce, _| {
        Msg::DeviceHello(schema::DeviceHello {
            pin: me.pin().0,
            identity_key: me.public_key().to_vec().into(),
            signature: me.prove(nonce, &[0u8; 32]).expect("signs").into(),
            agent: "replay".into(),
        })
    })
    .await
    .err()
    .expect("refused");
    assert_eq!(e.reason(), Some(RefusalReason::BadProof), "{e:?}");

    // The real device gets in.
    Client::device(relay.device_addr(), &me)
        .await
        .expect("logs in")
        .close()
        .await;
    relay.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_stays_with_the_key_it_was_first_seen_with() {
    let relay = TestRelay::start().await;
    let me = identity();
    // Another key was first seen with this PIN (as if it had collided with it).
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        relay.data_dir().join("relay.db").display()
    ))
    .await
    .expect("opens relay.db");
    sqlx::query("INSERT INTO pins (pin, identity_key, first_seen, last_seen) VALUES (?, ?, 0, 0)")
        .bind(i64::from(me.pin().0))
        .bind(vec![9u8; 32])
        .execute(&pool)
        .await
        .expect("inserts");
    pool.close().await;
    let e = Client::device(relay.device_addr(), &me)
        .await
        .err()
        .expect("refused");
    assert_eq!(e.reason(), Some(RefusalReason::PinTaken), "{e:?}");
    relay.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_sources_and_wrong_destinations_are_refused() {
    let relay = TestRelay::start().await;
    let (srp, _key) = relay.add_srp().await;
    let id = identity();
    let mut keys = Sessions::new();

    // A sealed frame claiming to come from another PIN.
    let mut device = Client::device(relay.device_addr(), &id)
        .await
        .expect("logs in");
    device
        .send(keys.seal_for_server(Pin(id.pin().0 ^ 1), srp, "spoofed"))
        .await;
    let (reason, detail) = device.closed().await.expect("refused");
    assert_eq!(reason, RefusalReason::Protocol);
    assert!(detail.contains("source"), "{detail}");

    // A control frame claiming to come from the relay.
    let mut device = Client::device(relay.device_addr(), &id)
        .await
        .expect("logs in");
    device
        .send(Frame::control(
            Address::Relay,
            Address::Relay,
            &schema::Control {
                msg: Some(Msg::Ack(schema::Ack { frames: vec![] })),
            },
        ))
        .await;
    assert_eq!(
        device.closed().await.map(|(r, _)| r),
        Some(RefusalReason::Protocol)
    );

    // A device may not send sealed frames to another device.
    let mut device = Client::device(relay.device_addr(), &id)
        .await
        .expect("logs in");
    let other = identity().pin();
    let f = keys
        .device
        .sealer
        .seal(Address::Pin(id.pin()), Address::Pin(other), b"sideways")
        .expect("seals");
    device.send(f).await;
    assert_eq!(
        device.closed().await.map(|(r, _)| r),
        Some(RefusalReason::Protocol)
    );
    relay.handle.shutdown().await;
}

/// A logged-in device and server that exchange one frame each way.
async fn exchange_works(relay: &TestRelay, srp: bramble_proto::SrpId, key: &str) {
    let id = identity();
    let pin = id.pin();
    let mut keys = Sessions::new();
    let mut server = Client::server(relay.server_addr(), srp, key)
        .await
        .expect("server logs in");
    let mut device = Client::device(relay.device_addr(), &id)
        .await
        .expect("device logs in");
    server.send(keys.seal_for_device(srp, pin, "ping")).await;
    let f = device.sealed().await;
    assert_eq!(keys.open_at_device(&f), "ping");
    device.send(keys.seal_for_server(pin, srp, "pong")).await;
    let f = server.sealed().await;
    assert_eq!(keys.open_at_server(&f), "pong");
    server.close().await;
    device.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_frames_close_only_their_connection() {
    let relay = TestRelay::start().await;
    let (srp, key) = relay.add_srp().await;
    let good = identity();
    let pin = good.pin();
    let mut keys = Sessions::new();
    let mut server = Client::server(relay.server_addr(), srp, &key)
        .await
        .expect("server logs in");
    let mut device = Client::device(relay.device_addr(), &good)
        .await
        .expect("device logs in");

    let header = Header {
        kind: FrameKind::Control,
        src: Address::Relay,
        dst: Address::Relay,
        seq: 0,
    };
    let mut bad_inputs: Vec<(&str, Vec<u8>)> = Vec::new();
    // Announces 4 GiB.
    bad_inputs.push(("oversized", vec![0xFF, 0xFF, 0xFF, 0xFF, 1, 1]));
    // Just over the limit.
    bad_inputs.push((
        "one byte too many",
        ((1u32 << 20) + 1).to_be_bytes().to_vec(),
    ));
    // A frame of an unknown version.
    bad_inputs.push(("bad version", {
        let mut v = 40u32.to_be_bytes().to_vec();
        v.extend_from_slice(&[9; 40]);
        v
    }));
    // A control frame whose body is not protobuf.
    bad_inputs.push(("bad protobuf", {
        let bad = Frame::new(header, vec![0xFF; 12]);
        bad.to_bytes().expect("encodes").to_vec()
    }));

    for (what, bytes) in bad_inputs {
        let mut hostile = Client::device(relay.device_addr(), &identity())
            .await
            .expect("logs in");
        // Patch the source to the hostile device's own PIN where a header is there.
        let mut bytes = bytes;
        if what == "bad protobuf" {
            bytes[6..11].copy_from_slice(&hostile.me.to_bytes());
        }
        hostile.send_raw(&bytes).await;
        let (reason, detail) = hostile
            .closed()
            .await
            .unwrap_or_else(|| panic!("{what}: no refusal"));
        assert_eq!(reason, RefusalReason::Protocol, "{what}: {detail}");

        // The good pair goes on.
        server
            .send(keys.seal_for_device(srp, pin, &format!("still here after {what}")))
            .await;
        let f = device.sealed().await;
        assert_eq!(keys.open_at_device(&f), format!("still here after {what}"));
        device.ack(&[&f]).await;
        let r = server.report().await;
        assert_eq!(r.seq, f.header.seq);
    }

    // Garbage before any login, and a connection that never says hello.
    let mut tls = tls_connect(relay.device_addr()).await;
    let _ = tls.write_all(&[0xFF; 64]).await;
    let mut buf = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        let mut all = Vec::new();
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => break all,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the relay closes it");
    assert!(!read.is_empty(), "a challenge, then a refusal");
    let mut tcp = tokio::net::TcpStream::connect(relay.server_addr())
        .await
        .expect("connects");
    let _ = tcp.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("the relay closes a plain-text connection");
    assert!(n.is_ok());

    exchange_works(&relay, srp, &key).await;
    relay.handle.shutdown().await;
}

/// Bytes that often look like frames, so fuzzing reaches past the length check.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    let framish = (
        0u32..2048,
        prop_oneof![Just(1u8), any::<u8>()],
        prop_oneof![Just(1u8), Just(2u8), any::<u8>()],
        proptest::collection::vec(any::<u8>(), 10..10 + 8),
        proptest::collection::vec(any::<u8>(), 0..256),
    )
        .prop_map(|(len, version, kind, addrs_seq, body)| {
            let mut v = len.to_be_bytes().to_vec();
            v.push(version);
            v.push(kind);
            v.extend_from_slice(&addrs_seq);
            v.extend_from_slice(&body);
            v
        });
    prop_oneof![proptest::collection::vec(any::<u8>(), 0..600), framish]
}

#[derive(Debug, Clone, Copy)]
enum Stage {
    /// Plain TCP, no TLS.
    Tcp,
    /// TLS, before the hello.
    BeforeLogin,
    /// Logged in as a device.
    AfterLogin,
}

#[test]
fn arbitrary_bytes_never_take_the_relay_down() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let relay = rt.block_on(TestRelay::start());
    let (srp, key) = rt.block_on(relay.add_srp());
    let mut runner = TestRunner::new(Config {
        cases: 16,
        failure_persistence: None,
        ..Config::default()
    });
    let stage = prop_oneof![
        Just(Stage::Tcp),
        Just(Stage::BeforeLogin),
        Just(Stage::AfterLogin)
    ];
    let conns = proptest::collection::vec(
        (stage, proptest::collection::vec(hostile_bytes(), 1..4)),
        1..5,
    );
    let device_addr = relay.device_addr();
    let server_addr = relay.server_addr();
    runner
        .run(&conns, |conns| {
            rt.block_on(async {
                let mut tasks = Vec::new();
                for (i, (stage, chunks)) in conns.into_iter().enumerate() {
                    let addr = if i % 2 == 0 { device_addr } else { server_addr };
                    tasks.push(tokio::spawn(async move {
                        hostile_connection(stage, addr, device_addr, chunks).await;
                    }));
                }
                for t in tasks {
                    t.await.expect("client task");
                }
            });
            Ok(())
        })
        .expect("no case fails");
    rt.block_on(async {
        exchange_works(&relay, srp, &key).await;
        relay.handle.shutdown().await;
    });
}

async fn hostile_connection(
    stage: Stage,
    addr: std::net::SocketAddr,
    device_addr: std::net::SocketAddr,
    chunks: Vec<Vec<u8>>,
) {
    let patience = Duration::from_millis(300);
    let drain = async |r: &mut (dyn tokio::io::AsyncRead + Unpin + Send)| {
        let mut buf = [0u8; 2048];
        let _ = tokio::time::timeout(patience, async {
            while let Ok(n) = r.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    };
    match stage {
        Stage::Tcp => {
            let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await else {
                return;
            };
            for c in &chunks {
                let _ = tcp.write_all(c).await;
            }
            drain(&mut tcp).await;
        }
        Stage::BeforeLogin => {
            let mut tls = tls_connect(addr).await;
            for c in &chunks {
                let _ = tls.write_all(c).await;
            }
            let _ = tls.flush().await;
            drain(&mut tls).await;
        }
        Stage::AfterLogin => {
            let id = identity();
            let Ok(mut c) = Client::device(device_addr, &id).await else {
                panic!("a fresh device could not log in: the relay is hurt");
            };
            for chunk in &chunks {
                c.send_raw(chunk).await;
            }
            drain(c.framed.get_mut()).await;
        }
    }
}
