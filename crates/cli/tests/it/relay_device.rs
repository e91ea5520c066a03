//! A stand-alone `bramble relay`: its SRP ids managed with `bramble relay srp`, and
//! `bramble device` connecting to it.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::util::{Background, Run, bramble, field, is_fingerprint, s, tempdir};

/// `bramble relay --data DIR srp ARGS…`.
fn srp(root: &Path, dir: &Path, args: &[&str]) -> Run {
    let mut all = vec!["relay", "--data", s(dir), "srp"];
    all.extend_from_slice(args);
    bramble(root, all)
}

/// The entry for `id` in `srp list --json`.
fn entry(root: &Path, dir: &Path, id: &str) -> Value {
    let list = srp(root, dir, &["list", "--json"]).success().json();
    list.as_array()
        .expect("a JSON array")
        .iter()
        .find(|e| e["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("{id} is not listed: {list:#}"))
}

/// The device's state in `device status --json`: the whole object, or its `device` member
/// when the profile is shown beside it.
fn device_state(v: &Value) -> &Value {
    if v.get("device").is_some_and(Value::is_object) {
        &v["device"]
    } else {
        v
    }
}

/// `bramble device --home HOME ARGS…`.
fn device(root: &Path, home: &Path, args: &[&str]) -> Run {
    let mut all = vec!["device", "--home", s(home)];
    all.extend_from_slice(args);
    bramble(root, all)
}

#[test]
fn relay_srp_ids_and_a_device() {
    let tmp = tempdir();
    let root = tmp.path();
    let rdir = root.join("relay");

    // Port 0: the relay prints the ports it got.
    let mut relay = Background::start(
        "relay",
        root,
        [
            "relay",
            "--data",
            s(&rdir),
            "--server-listen",
            "127.0.0.1:0",
            "--device-listen",
            "127.0.0.1:0",
        ],
    );
    let out = relay.wait_for("the relay's banner", |r| {
        let out = r.stdout();
        out.contains("Press Ctrl-C to stop.").then_some(out)
    });
    let devices = field(&out, "devices connect to")
        .unwrap_or_else(|| panic!("no device address\n{out}"))
        .to_owned();
    assert!(devices.starts_with("127.0.0.1:"), "{out}");
    assert!(
        field(&out, "servers connect to").is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{out}"
    );
    let cert = field(&out, "certificate").unwrap_or_default();
    let fingerprint = cert
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(
        is_fingerprint(&fingerprint),
        "no fingerprint (64 hex digits in pairs) in {cert:?}\n{out}"
    );
    assert!(
        cert.contains("new"),
        "a new certificate is not called new\n{out}"
    );

    // ---- SRP ids, while the relay runs
    srp(root, &rdir, &["list"])
        .success()
        .stdout_has("No SRP ids yet");
    let added = srp(root, &rdir, &["add", "--json"]).success().json();
    let id = added["srp_id"].as_str().expect("srp_id").to_owned();
    let key = added["srp_key"].as_str().expect("srp_key");
    assert!(id.len() == 9 && id.starts_with('S'), "{added:#}");
    assert!(key.len() >= 16, "a short key: {added:#}");
    let e = entry(root, &rdir, &id);
    assert_eq!(e["state"], "enabled", "{e:#}");
    assert!(!e.to_string().contains(key), "the key is listed: {e:#}");

    srp(root, &rdir, &["disable", &id])
        .success()
        .stdout_has(&id);
    assert_eq!(entry(root, &rdir, &id)["state"], "disabled");
    let table = srp(root, &rdir, &["list"]).success();
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("disabled")),
        "{table}"
    );
    srp(root, &rdir, &["enable", &id]).success().stdout_has(&id);
    assert_eq!(entry(root, &rdir, &id)["state"], "enabled");
    srp(root, &rdir, &["remove", &id]).success().stdout_has(&id);
    srp(root, &rdir, &["remove", &id])
        .code(1)
        .no_panic()
        .stderr_has(&id);
    srp(root, &rdir, &["enable", "not-an-id"]).code(2);

    // ---- a device
    let home = root.join("phone");
    let pin = device(root, &home, &["pin"])
        .success()
        .stdout
        .trim()
        .to_owned();
    assert!(
        pin.len() == 8 && pin.chars().all(|c| c.is_ascii_hexdigit()),
        "not a PIN: {pin:?}"
    );
    device(root, &home, &["pin"]).success().stdout_has(&pin);
    let json = device(root, &home, &["status", "--json"]).success().json();
    let st = device_state(&json);
    assert_eq!(st["pin"], pin.as_str(), "{st:#}");
    assert_eq!(st["server"], Value::Null, "{st:#}");

    device(
        root,
        &home,
        &["--relay", &devices, "connect", "--for", "2s"],
    )
    .success()
    .stdout_has(&format!("Connected to the relay as PIN {pin}"));
    let json = device(root, &home, &["status", "--json"]).success().json();
    let st = device_state(&json);
    assert_eq!(st["relay"], devices.as_str(), "{st:#}");
    assert_eq!(
        st["relay_fingerprint"],
        fingerprint.as_str(),
        "the certificate was not pinned on first use: {st:#}"
    );

    device(root, &home, &["ping"])
        .code(1)
        .no_panic()
        .stderr_has("not activated");

    // A fingerprint that is not one is a usage error; one that does not match is refused.
    device(root, &home, &["--fingerprint", "not-hex", "pin"]).code(2);
    let other = root.join("phone-2");
    let wrong = vec!["00"; 32].join(":");
    device(
        root,
        &other,
        &[
            "--relay",
            &devices,
            "--fingerprint",
            &wrong,
            "connect",
            "--for",
            "1s",
        ],
    )
    .code(1)
    .no_panic()
    .stderr_has(&fingerprint);

    relay.assert_running();
    let stopped = relay.terminate(Duration::from_secs(10));
    assert_eq!(
        stopped.code(),
        Some(0),
        "relay exited with {stopped} on SIGTERM"
    );
}
