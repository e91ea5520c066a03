//! The device against a real relay (`bramble-relay`, in process on 127.0.0.1) and a fake
//! enterprise server: a `bramble_net::Link` logged in with an SRP id, sealing with
//! `Session::server`.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bramble_device::{Device, DeviceError, Incoming};
use bramble_net::link::frame_ref;
use bramble_net::{CertPin, Credentials, Fingerprint, Link, LinkEvent};
use bramble_proto::schema::{self, DeliveryStatus, Envelope, envelope::Body};
use bramble_proto::{Address, Frame, MasterKey, Pin, Session, SrpId};
use bramble_relay::{RelayConfig, RelayHandle};

use crate::ping;

/// How long any one step may take before the test fails instead of hanging.
const STEP: Duration = Duration::from_secs(15);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {STEP:?}"))
}

/// A relay on loopback ports, with one SRP id registered.
struct TestRelay {
    handle: RelayHandle,
    srp: SrpId,
    srp_key: String,
}

async fn start_relay(data_dir: &Path, device_port: u16) -> TestRelay {
    let (srp, srp_key) = bramble_relay::srp_add(data_dir, None)
        .await
        .expect("SRP id added");
    TestRelay {
        handle: start_relay_only(data_dir, device_port).await,
        srp,
        srp_key,
    }
}

async fn start_relay_only(data_dir: &Path, device_port: u16) -> RelayHandle {
    let mut cfg = RelayConfig::with_data_dir(data_dir);
    cfg.server_listen = "127.0.0.1:0".parse().expect("addr");
    cfg.device_listen = format!("127.0.0.1:{device_port}").parse().expect("addr");
    bramble_relay::start(cfg).await.expect("relay starts")
}

/// The enterprise server's side, as little of it as the tests need: one session per device.
struct FakeServer {
    link: Link,
    srp: SrpId,
    sessions: HashMap<Pin, Session>,
    reports: Vec<schema::DeliveryReport>,
}

impl FakeServer {
    async fn connect(relay: &TestRelay) -> FakeServer {
        let link = Link::connect(
            &relay.handle.server_addr().to_string(),
            &CertPin::new(Some(relay.handle.fingerprint())),
            Credentials::Server {
                srp: relay.srp,
                key: &relay.srp_key,
            },
        )
        .await
        .expect("server logs in");
        FakeServer {
            link,
            srp: relay.srp,
            sessions: HashMap::new(),
            reports: Vec::new(),
        }
    }

    /// Provisions `pin` on the server's side (what `Device::provision` is on the device's).
    fn provision(&mut self, pin: Pin, key: &MasterKey) {
        let session = Session::server(key, 1..1_000_000, 0).expect("session");
        self.sessions.insert(pin, session);
    }

    fn seal(&mut self, pin: Pin, env: &Envelope) -> Frame {
        let body = prost::Message::encode_to_vec(env);
        self.sessions
            .get_mut(&pin)
            .expect("provisioned")
            .sealer
            .seal(Address::Srp(self.srp), Address::Pin(pin), &body)
            .expect("seals")
    }

    async fn send(&mut self, pin: Pin, env: &Envelope) -> u64 {
        let frame = self.seal(pin, env);
        let seq = frame.header.seq;
        self.link.send(frame).await.expect("server sends");
        seq
    }

    /// The next envelope from a device, opened and acked; delivery reports are kept.
    async fn recv(&mut self) -> (Pin, u64, Envelope) {
        loop {
            match self.link.recv().await.expect("server receives") {
                LinkEvent::Report(r) => self.reports.push(r),
                LinkEvent::Sealed(frame) => {
                    let Address::Pin(pin) = frame.header.src else {
                        panic!("a sealed frame not from a device: {:?}", frame.header);
                    };
                    let plain = self
                        .sessions
                        .get_mut(&pin)
                        .expect("a provisioned device")
                        .opener
                        .open(&frame)
                        .expect("the device's frame opens");
                    self.link
                        .ack(vec![frame_ref(&frame)])
                        .await
                        .expect("server acks");
                    let env = bramble_proto::decode_message(&plain, 1 << 22).expect("envelope");
                    return (pin, frame.header.seq, env);
                }
                other => panic!("unexpected event {other:?}"),
            }
        }
    }

    /// Waits until the relay reported DELIVERED for every one of `seqs` sent to `pin`.
    async fn await_delivered(&mut self, pin: Pin, seqs: &[u64]) {
        let delivered = |reports: &[schema::DeliveryReport], seq: u64| {
            reports.iter().any(|r| {
                r.pin == pin.0 && r.seq == seq && r.status == DeliveryStatus::Delivered as i32
            })
        };
        while !seqs.iter().all(|s| delivered(&self.reports, *s)) {
            match self.link.recv().await.expect("server receives") {
                LinkEvent::Report(r) => self.reports.push(r),
                other => panic!("unexpected event {other:?}"),
            }
        }
    }

    /// Answers every Ping with a Pong, for ever (run it in a task).
    async fn serve_pongs(mut self) {
        loop {
            let (pin, _, env) = self.recv().await;
            if let Some(Body::Ping(p)) = env.body {
                let pong = Envelope {
                    version: 1,
                    body: Some(Body::Pong(schema::Pong {
                        note: p.note,
                        ping_sent_at_ms: p.sent_at_ms,
                    })),
                };
                self.send(pin, &pong).await;
            }
        }
    }
}

#[tokio::test]
async fn ping_pong_through_the_relay_and_the_certificate_pinned_on_first_use() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let relay = start_relay(&tmp.path().join("relay"), 0).await;
    let relay_addr = relay.handle.device_addr();
    let key = MasterKey::generate().expect("key");

    let mut dev = Device::open(&tmp.path().join("phone")).expect("device");
    dev.set_relay(&relay_addr.to_string(), None).expect("sets");
    dev.provision(relay.srp, key.clone()).expect("binds");
    let mut server = FakeServer::connect(&relay).await;
    server.provision(dev.pin(), &key);
    let pongs = tokio::spawn(server.serve_pongs());

    {
        let mut conn = within("connect", dev.connect()).await.expect("connects");
        let rtt = within("ping", conn.ping("first")).await.expect("pong");
        assert!(rtt < STEP);
        within("ping", conn.ping("second")).await.expect("pong");
        within("close", conn.close()).await;
    }
    // Trusted on first use, remembered on disk.
    assert_eq!(
        dev.status().relay_fingerprint,
        Some(relay.handle.fingerprint())
    );
    assert!(dev.status().tx_next >= 3);
    drop(dev);
    let mut dev = Device::open(&tmp.path().join("phone")).expect("reopens");
    assert_eq!(
        dev.status().relay_fingerprint,
        Some(relay.handle.fingerprint())
    );
    {
        let mut conn = within("connect", dev.connect())
            .await
            .expect("pinned: connects");
        within("ping", conn.ping("after restart"))
            .await
            .expect("pong");
        within("close", conn.close()).await;
    }

    // The relay comes back on the same port with another certificate: refused, in words.
    let old_fp = relay.handle.fingerprint();
    pongs.abort();
    relay.handle.shutdown().await;
    let other = start_relay_only(&tmp.path().join("other-relay"), relay_addr.port()).await;
    let new_fp = other.fingerprint();
    assert_ne!(old_fp, new_fp);
    let err = within("connect", dev.connect()).await.expect_err("refused");
    assert!(
        matches!(err, DeviceError::RelayCertificateChanged { pinned, seen, .. }
            if pinned == old_fp && seen == new_fp),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with("The relay's certificate changed"),
        "{text}"
    );
    assert!(text.contains(&old_fp.to_string()), "{text}");
    assert!(text.contains(&new_fp.to_string()), "{text}");
    assert!(!err.is_transient());
    // Nothing was re-pinned by the refused attempt.
    assert_eq!(dev.status().relay_fingerprint, Some(old_fp));

    // Pinning the new fingerprint on purpose lets it connect.
    dev.set_relay(&relay_addr.to_string(), Some(new_fp))
        .expect("sets");
    let conn = within("connect", dev.connect()).await.expect("connects");
    within("close", conn.close()).await;
    other.shutdown().await;
}

#[tokio::test]
async fn frames_sent_while_the_device_was_offline_arrive_after_it_connects() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let relay = start_relay(tmp.path(), 0).await;
    let key = MasterKey::generate().expect("key");
    let mut dev = Device::in_memory().expect("device");
    let pin = dev.pin();
    dev.set_relay(
        &relay.handle.device_addr().to_string(),
        Some(relay.handle.fingerprint()),
    )
    .expect("sets");
    dev.provision(relay.srp, key.clone()).expect("binds");
    let mut server = FakeServer::connect(&relay).await;
    server.provision(pin, &key);

    // Seen once, so the relay knows the PIN; then out of coverage.
    within(
        "close",
        within("connect", dev.connect())
            .await
            .expect("connects")
            .close(),
    )
    .await;

    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(server.send(pin, &ping(&format!("while away {i}"))).await);
    }

    let mut conn = within("connect", dev.connect()).await.expect("connects");
    assert_eq!(conn.queued_at_login(), 3);
    for (i, seq) in sent.iter().enumerate() {
        match within("recv", conn.recv()).await.expect("receives") {
            Incoming::Envelope { seq: got, env } => {
                assert_eq!(got, *seq);
                let Some(Body::Ping(p)) = env.body else {
                    panic!("expected a ping, got {env:?}");
                };
                assert_eq!(p.note, format!("while away {i}"));
            }
            other => panic!("expected an envelope, got {other:?}"),
        }
    }
    // The device answered each Ping by itself.
    for i in 0..3 {
        let (from, _, env) = within("server recv", server.recv()).await;
        assert_eq!(from, pin);
        assert!(
            matches!(&env.body, Some(Body::Pong(p)) if p.note == format!("while away {i}")),
            "{env:?}"
        );
    }
    // And acked each frame: the relay reports them delivered and holds none of them.
    within("delivered", server.await_delivered(pin, &sent)).await;
    within("close", conn.close()).await;
    let conn = within("connect", dev.connect()).await.expect("connects");
    assert_eq!(conn.queued_at_login(), 0);
    within("close", conn.close()).await;
    relay.handle.shutdown().await;
}

#[tokio::test]
async fn a_frame_sealed_with_a_wrong_key_is_rejected_and_acked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let relay = start_relay(tmp.path(), 0).await;
    let key = MasterKey::generate().expect("key");
    let mut dev = Device::in_memory().expect("device");
    let pin = dev.pin();
    dev.set_relay(&relay.handle.device_addr().to_string(), None)
        .expect("sets");
    dev.provision(relay.srp, key.clone()).expect("binds");
    let mut server = FakeServer::connect(&relay).await;
    server.provision(pin, &MasterKey::generate().expect("another key"));

    let mut conn = within("connect", dev.connect()).await.expect("connects");
    let bad = server.send(pin, &ping("wrong key")).await;
    match within("recv", conn.recv()).await.expect("no error") {
        Incoming::Rejected { seq, reason } => {
            assert_eq!(seq, bad);
            assert!(reason.contains("another key"), "{reason}");
        }
        other => panic!("a frame with the wrong key opened: {other:?}"),
    }
    within("delivered", server.await_delivered(pin, &[bad])).await;

    // The right key, and the same sequence number: the rejection burnt nothing.
    server.provision(pin, &key);
    let good = server.send(pin, &ping("right key")).await;
    assert_eq!(good, bad);
    assert!(matches!(
        within("recv", conn.recv()).await.expect("receives"),
        Incoming::Envelope { seq, .. } if seq == good
    ));
    within("close", conn.close()).await;
    relay.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_in_memory_devices_ping_at_once() {
    const DEVICES: usize = 50;
    let tmp = tempfile::tempdir().expect("tempdir");
    let relay = start_relay(tmp.path(), 0).await;
    let addr = relay.handle.device_addr().to_string();
    let fp: Fingerprint = relay.handle.fingerprint();
    let mut server = FakeServer::connect(&relay).await;
    let mut devices = Vec::new();
    for _ in 0..DEVICES {
        let key = MasterKey::generate().expect("key");
        let mut dev = Device::in_memory().expect("device");
        dev.set_relay(&addr, Some(fp)).expect("sets");
        dev.provision(relay.srp, key.clone()).expect("binds");
        server.provision(dev.pin(), &key);
        devices.push(dev);
    }
    let pongs = tokio::spawn(server.serve_pongs());
    let tasks: Vec<_> = devices
        .into_iter()
        .map(|mut dev| {
            tokio::spawn(async move {
                let mut conn = dev.connect().await?;
                let rtt = conn.ping("load").await?;
                conn.close().await;
                Ok::<_, DeviceError>(rtt)
            })
        })
        .collect();
    for t in tasks {
        within("device", t).await.expect("task").expect("pinged");
    }
    pongs.abort();
    relay.handle.shutdown().await;
}
