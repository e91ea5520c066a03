//! The device's home directory and in-memory mode, with no network.

use std::path::Path;

use bramble_device::{Device, DeviceError, Incoming, STATE_FILE, TX_BLOCK};
use bramble_proto::schema::{self, Envelope, envelope::Body};
use bramble_proto::{Address, MasterKey, Session};

use crate::{ping, srp};

fn state_json(home: &Path) -> serde_json::Value {
    let bytes = std::fs::read(home.join(STATE_FILE)).expect("state file");
    serde_json::from_slice(&bytes).expect("state is JSON")
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("exists")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn open_creates_identity_and_state_readable_by_the_owner_only() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path().join("phone");
    let dev = Device::open(&home).expect("opens");
    let key = home.join(bramble_device::IDENTITY_FILE);
    assert!(key.is_file());
    let id = bramble_proto::DeviceIdentity::from_pkcs8(&std::fs::read(&key).expect("reads"))
        .expect("a PKCS#8 key");
    assert_eq!(id.pin(), dev.pin());
    assert_eq!(state_json(&home)["pin"], dev.pin().to_string());
    #[cfg(unix)]
    {
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&home.join(STATE_FILE)), 0o600);
        assert_eq!(mode(&home), 0o700);
    }
    assert_eq!(dev.home(), Some(home.as_path()));
    let status = dev.status();
    assert_eq!(status.server, None);
    assert_eq!(status.relay, None);
}

#[test]
fn reopening_gives_the_same_pin_and_a_second_opener_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let first = Device::open(tmp.path()).expect("opens");
    let err = Device::open(tmp.path()).expect_err("the home is locked");
    assert!(matches!(err, DeviceError::InUse { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("Another program is using the device")
    );
    let pin = first.pin();
    drop(first);
    assert_eq!(Device::open(tmp.path()).expect("reopens").pin(), pin);
}

#[test]
fn settings_and_binding_survive_reopen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let key = MasterKey::from_bytes([0x42; 32]);
    let fp: bramble_net::Fingerprint = format!("{}", bramble_net::Fingerprint([0xAB; 32]))
        .parse()
        .expect("fingerprint");
    {
        let mut dev = Device::open(tmp.path()).expect("opens");
        dev.set_relay("127.0.0.1:4101", Some(fp)).expect("sets");
        dev.provision(srp(40_012_345), key.clone()).expect("binds");
    }
    let mut dev = Device::open(tmp.path()).expect("reopens");
    let status = dev.status();
    assert_eq!(status.relay.as_deref(), Some("127.0.0.1:4101"));
    assert_eq!(status.relay_fingerprint, Some(fp));
    assert_eq!(status.server, Some(srp(40_012_345)));
    assert_eq!(status.key_generation, 1);

    let json = serde_json::to_value(&status).expect("serializes");
    assert_eq!(json["pin"], dev.pin().to_string());
    assert_eq!(json["server"], "S40012345");
    assert_eq!(json["relay_fingerprint"], fp.to_string());

    // The same key again changes nothing; a new key for the same server is a regeneration.
    dev.provision(srp(40_012_345), key.clone()).expect("binds");
    assert_eq!(dev.status().key_generation, 1);
    dev.provision(srp(40_012_345), MasterKey::from_bytes([0x43; 32]))
        .expect("binds");
    assert_eq!(dev.status().key_generation, 2);
    dev.provision(srp(7), key).expect("binds");
    assert_eq!(dev.status().key_generation, 1);

    dev.unbind().expect("unbinds");
    assert_eq!(dev.status().server, None);
    assert_eq!(dev.status().relay.as_deref(), Some("127.0.0.1:4101"));
    dev.reset().expect("resets");
    drop(dev);
    let dev = Device::open(tmp.path()).expect("reopens");
    let status = dev.status();
    assert_eq!((status.server, status.relay), (None, None));
    assert_eq!(status.relay_fingerprint, None);
}

#[test]
fn debug_output_shows_no_keys() {
    let mut dev = Device::in_memory().expect("device");
    dev.provision(srp(1), MasterKey::from_bytes([0x5A; 32]))
        .expect("binds");
    let shown = format!("{dev:?}");
    assert!(shown.contains(&dev.pin().to_string()), "{shown}");
    assert!(
        !shown.contains("5a5a") && !shown.contains("90, 90"),
        "{shown}"
    );
}

#[test]
fn transmit_numbers_are_reserved_on_disk_before_use() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let key = MasterKey::from_bytes([9; 32]);
    let mut used = Vec::new();
    {
        let mut dev = Device::open(tmp.path()).expect("opens");
        dev.provision(srp(1), key.clone()).expect("binds");
        for _ in 0..3 {
            let frame = dev.seal(&ping("n")).expect("seals");
            // The file already covers the number just used.
            let reserved = state_json(tmp.path())["tx_reserved"]
                .as_u64()
                .expect("a number");
            assert!(
                frame.header.seq < reserved,
                "{} < {reserved}",
                frame.header.seq
            );
            used.push(frame);
        }
        // Dropped without any clean shutdown, as in a crash.
    }
    let mut dev = Device::open(tmp.path()).expect("reopens");
    let next = dev.seal(&ping("after restart")).expect("seals");
    let highest = used.iter().map(|f| f.header.seq).max().expect("some");
    assert!(next.header.seq > highest, "{} > {highest}", next.header.seq);
    assert_eq!(next.header.seq, TX_BLOCK + 1);
    used.push(next);

    // The server opens all of them, in order.
    let mut server = Session::server(&key, 1..10, 0).expect("session");
    for f in &used {
        assert_eq!(f.header.dst, Address::Srp(srp(1)));
        assert_eq!(f.header.src, Address::Pin(dev.pin()));
        server.opener.open(f).expect("opens");
    }
}

#[test]
fn sealing_crosses_reservation_blocks_without_repeating_a_number() {
    let key = MasterKey::from_bytes([3; 32]);
    let mut dev = Device::in_memory().expect("device");
    dev.provision(srp(2), key.clone()).expect("binds");
    let mut server = Session::server(&key, 1..10, 0).expect("session");
    let mut last = 0;
    for i in 0..(3 * TX_BLOCK + 5) {
        let f = dev.seal(&ping(&i.to_string())).expect("seals");
        assert!(f.header.seq > last);
        last = f.header.seq;
        server.opener.open(&f).expect("opens");
    }
    let status = dev.status();
    assert_eq!(status.tx_next, last + 1);
    assert!(status.tx_reserved > last);
    // A new binding carries on with higher numbers.
    dev.provision(srp(2), MasterKey::from_bytes([4; 32]))
        .expect("binds");
    assert!(dev.seal(&ping("x")).expect("seals").header.seq > last);
}

#[test]
fn received_numbers_are_persisted_and_replays_rejected_across_restarts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let key = MasterKey::from_bytes([5; 32]);
    let mut dev = Device::open(tmp.path()).expect("opens");
    dev.provision(srp(3), key.clone()).expect("binds");
    let me = Address::Pin(dev.pin());
    let mut server = Session::server(&key, 1..100, 0).expect("session");
    let mut frames = Vec::new();
    for i in 0..3 {
        let body = prost::Message::encode_to_vec(&ping(&format!("to device {i}")));
        frames.push(
            server
                .sealer
                .seal(Address::Srp(srp(3)), me, &body)
                .expect("seals"),
        );
    }
    match dev.unseal(&frames[0]).expect("persists") {
        Incoming::Envelope { seq, env } => {
            assert_eq!(seq, 1);
            assert!(matches!(env.body, Some(Body::Ping(p)) if p.note == "to device 0"));
        }
        other => panic!("expected an envelope, got {other:?}"),
    }
    assert!(matches!(
        dev.unseal(&frames[0]).expect("no error"),
        Incoming::Rejected { seq: 1, .. }
    ));
    assert!(matches!(
        dev.unseal(&frames[2]).expect("persists"),
        Incoming::Envelope { seq: 3, .. }
    ));
    assert_eq!(state_json(tmp.path())["binding"]["rx_highest"], 3);
    drop(dev);

    // After a restart, nothing up to the highest number opens again, not even frame 2,
    // which never arrived (the conservative restore).
    let mut dev = Device::open(tmp.path()).expect("reopens");
    assert_eq!(dev.status().rx_highest, 3);
    for f in &frames {
        let got = dev.unseal(f).expect("no error");
        assert!(matches!(got, Incoming::Rejected { .. }), "{got:?}");
    }

    // A frame sealed with another key, and one from another server, are rejected in words.
    let mut stranger =
        Session::server(&MasterKey::from_bytes([6; 32]), 50..60, 0).expect("session");
    let body = prost::Message::encode_to_vec(&ping("forged"));
    let forged = stranger
        .sealer
        .seal(Address::Srp(srp(3)), me, &body)
        .expect("seals");
    let Incoming::Rejected { seq, reason } = dev.unseal(&forged).expect("no error") else {
        panic!("a forged frame opened");
    };
    assert_eq!(seq, 50);
    assert!(reason.contains("another key"), "{reason}");
    let elsewhere = stranger
        .sealer
        .seal(Address::Srp(srp(4)), me, &body)
        .expect("seals");
    let Incoming::Rejected { reason, .. } = dev.unseal(&elsewhere).expect("no error") else {
        panic!("a frame from another server opened");
    };
    assert!(reason.contains("S00000004"), "{reason}");
    // The rejections did not move the window.
    assert_eq!(dev.status().rx_highest, 3);
}

#[test]
fn a_damaged_state_file_is_named_in_the_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    drop(Device::open(tmp.path()).expect("opens"));
    let state = tmp.path().join(STATE_FILE);
    let good = std::fs::read(&state).expect("reads");

    std::fs::write(&state, b"{ this is not json").expect("writes");
    let err = Device::open(tmp.path()).expect_err("refused");
    assert!(matches!(err, DeviceError::DamagedState { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(&state.display().to_string()), "{text}");
    assert!(text.contains("damaged"), "{text}");

    // Valid JSON, but a master key that is not one.
    std::fs::write(&state, &good).expect("writes");
    let mut json = state_json_from(&state, |v| {
        v["binding"] = serde_json::json!({
            "server": "S00000001", "master_key": "zz", "key_generation": 1, "rx_highest": 0
        });
    });
    std::fs::write(&state, &json).expect("writes");
    let text = Device::open(tmp.path()).expect_err("refused").to_string();
    assert!(text.contains("master key"), "{text}");

    // Written for another identity.
    json = state_json_from(&state, |v| {
        v["binding"] = serde_json::Value::Null;
        v["pin"] = "00000000".into();
    });
    std::fs::write(&state, &json).expect("writes");
    let err = Device::open(tmp.path()).expect_err("refused");
    assert!(matches!(err, DeviceError::IdentityMismatch { .. }), "{err}");

    // A damaged identity key.
    std::fs::remove_file(&state).expect("removes");
    let key = tmp.path().join(bramble_device::IDENTITY_FILE);
    std::fs::write(&key, b"junk").expect("writes");
    let err = Device::open(tmp.path()).expect_err("refused");
    assert!(matches!(err, DeviceError::DamagedIdentity { .. }), "{err}");
    assert!(err.to_string().contains(&key.display().to_string()));

    // The key gone while the state is there: refused, not silently a new PIN.
    std::fs::remove_file(&key).expect("removes");
    drop(Device::open(tmp.path()).expect("a new device"));
    std::fs::remove_file(&key).expect("removes");
    let err = Device::open(tmp.path()).expect_err("refused");
    assert!(matches!(err, DeviceError::IdentityMismatch { .. }), "{err}");
}

fn state_json_from(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("reads")).expect("JSON");
    edit(&mut v);
    serde_json::to_vec(&v).expect("serializes")
}

#[test]
fn in_memory_mode_writes_no_files() {
    let cwd = std::env::current_dir().expect("cwd");
    let before = listing(&cwd);
    let mut dev = Device::in_memory().expect("device");
    assert_eq!(dev.home(), None);
    dev.set_relay("127.0.0.1:1", None).expect("sets");
    dev.provision(srp(9), MasterKey::from_bytes([1; 32]))
        .expect("binds");
    for _ in 0..(TX_BLOCK + 1) {
        dev.seal(&ping("p")).expect("seals");
    }
    dev.reset().expect("resets");
    assert_eq!(listing(&cwd), before);
    // Two in-memory devices are two devices.
    assert_ne!(Device::in_memory().expect("device").pin(), dev.pin());
}

fn listing(dir: &Path) -> Vec<std::ffi::OsString> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .expect("lists")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    names.sort();
    names
}

#[test]
fn sending_without_a_server_says_the_device_is_not_activated() {
    let mut dev = Device::in_memory().expect("device");
    let err = dev.seal(&ping("hello")).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "This device is not activated: there is no enterprise server to send to."
    );
    let too_big = Envelope {
        version: 1,
        body: Some(Body::Error(schema::ErrorReport {
            code: 0,
            message: "x".repeat(2 << 20),
            about_seq: 0,
        })),
    };
    dev.provision(srp(1), MasterKey::from_bytes([1; 32]))
        .expect("binds");
    assert!(matches!(
        dev.seal(&too_big),
        Err(DeviceError::TooLarge { .. })
    ));
}

#[tokio::test]
async fn connecting_without_a_relay_or_coverage_says_so() {
    let mut dev = Device::in_memory().expect("device");
    let err = dev.connect().await.expect_err("no relay");
    assert!(matches!(err, DeviceError::NoRelay), "{err}");
    for bad in ["", "relay.example", "relay.example:http", ":4101"] {
        let err = dev.set_relay(bad, None).expect_err("refused");
        assert!(matches!(err, DeviceError::BadRelayAddress(_)), "{err}");
    }
    dev.set_relay("[::1]:4101", None).expect("IPv6 is fine");

    // A port nobody listens on.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        l.local_addr().expect("addr").to_string()
    };
    dev.set_relay(&addr, None).expect("sets");
    let err = dev.connect().await.expect_err("refused");
    assert_eq!(
        err.to_string(),
        format!(
            "No connection to the relay at {addr}: connection refused. Check the relay address \
             or try again when in coverage."
        )
    );
    assert!(err.is_transient());
    assert_eq!(dev.status().relay_fingerprint, None);
}
