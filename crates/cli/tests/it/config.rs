//! A configuration file `bramble serve` cannot use stops it with exit code 1 and a message
//! naming the key.

use crate::util::{bramble, s, tempdir};

/// Loopback listeners on ports the kernel picks, so that a configuration wrongly accepted
/// starts nothing on the default ports.
const SAFE_RELAY: &str = "[relay]\n\
                          server_listen = \"127.0.0.1:0\"\n\
                          device_listen = \"127.0.0.1:0\"\n";
const SAFE_ADMIN: &str = "[server.admin]\nlisten = \"127.0.0.1:0\"\n";

/// Runs `bramble serve --data … --config F` with `text` and expects exit 1 naming `key`.
#[track_caller]
fn refused(text: &str, key: &str) {
    let tmp = tempdir();
    let file = tmp.path().join("bramble.toml");
    std::fs::write(&file, text).expect("writing the configuration");
    let data = tmp.path().join("data");
    bramble(
        tmp.path(),
        ["serve", "--data", s(&data), "--config", s(&file)],
    )
    .code(1)
    .no_panic()
    .stderr_has(key)
    .stderr_has("bramble.toml");
}

#[test]
fn unknown_key_in_server() {
    refused(
        &format!("[server]\nlisten_port = 3180\n{SAFE_ADMIN}{SAFE_RELAY}"),
        "listen_port",
    );
}

#[test]
fn unknown_section() {
    refused(
        &format!("[servr]\ndata_dir = \"x\"\n{SAFE_ADMIN}{SAFE_RELAY}"),
        "servr",
    );
}

#[test]
fn unknown_key_in_server_admin() {
    refused(
        &format!("[server.admin]\nlisten = \"127.0.0.1:0\"\nport = 1\n{SAFE_RELAY}"),
        "port",
    );
}

#[test]
fn unknown_key_in_relay() {
    refused(
        &format!("{SAFE_ADMIN}{SAFE_RELAY}queue_expiry_days = 7\n"),
        "queue_expiry_days",
    );
}

#[test]
fn bad_values() {
    refused(
        &format!("[server]\nuplink_backoff_min = \"soon\"\n{SAFE_ADMIN}{SAFE_RELAY}"),
        "uplink_backoff_min",
    );
    refused(
        &format!("[server.admin]\nlisten = \"not an address\"\n{SAFE_RELAY}"),
        "listen",
    );
    refused(
        &format!("{SAFE_ADMIN}{SAFE_RELAY}queue_expiry = \"soon\"\n"),
        "queue_expiry",
    );
    refused(
        &format!("{SAFE_ADMIN}{SAFE_RELAY}queue_max_frames = \"many\"\n"),
        "queue_max_frames",
    );
}

#[test]
fn not_toml_and_missing_file() {
    refused("[server\n", "TOML");
    let tmp = tempdir();
    let missing = tmp.path().join("missing.toml");
    bramble(tmp.path(), ["serve", "--config", s(&missing)])
        .code(1)
        .stderr_has("does not exist")
        .stderr_has(s(&missing));
}

/// Runs `bramble serve` with `text` and expects exit 1 with `needle` in the message (no file
/// name needed: the failure is the mail server, not the file).
#[track_caller]
fn refused_at_start(text: &str, needle: &str) {
    let tmp = tempdir();
    let file = tmp.path().join("bramble.toml");
    std::fs::write(&file, text).expect("writing the configuration");
    let data = tmp.path().join("data");
    bramble(
        tmp.path(),
        ["serve", "--data", s(&data), "--config", s(&file)],
    )
    .code(1)
    .no_panic()
    .stderr_has(needle);
}

#[test]
fn an_unreachable_imap_server_is_named_at_start() {
    refused_at_start(
        &format!(
            "{SAFE_ADMIN}{SAFE_RELAY}[server.mail]\nimap = \"127.0.0.1:9\"\nservice_user = \"service\"\nservice_password = \"x\"\n"
        ),
        "127.0.0.1:9",
    );
}

#[test]
fn imap_without_a_service_account_is_refused_at_start() {
    refused_at_start(
        &format!("{SAFE_ADMIN}{SAFE_RELAY}[server.mail]\nimap = \"127.0.0.1:9\"\n"),
        "service_user",
    );
}

#[test]
fn an_unreachable_smtp_server_is_named_at_start() {
    refused_at_start(
        &format!("{SAFE_ADMIN}{SAFE_RELAY}[relay.mail]\nsmtp = \"127.0.0.1:9\"\n"),
        "SMTP server",
    );
}
