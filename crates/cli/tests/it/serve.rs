//! `bramble serve` with its in-process relay, administered with `bramble admin`; stopped with
//! SIGTERM and started again on the same data directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bramble_testkit::{DbKind, TestDb, free_port};
use serde_json::Value;

use crate::util::{Background, Run, bramble, eventually, field, is_fingerprint, s, tempdir};

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";

/// How long `bramble serve` may take to stop after SIGTERM.
pub(crate) const STOP: Duration = Duration::from_secs(10);

/// The configuration database `BRAMBLE_TEST_DB` asks for: `None` for the embedded default
/// (SQLite in the data directory), or a fresh PostgreSQL database.
pub(crate) fn test_db() -> Option<TestDb> {
    match DbKind::from_env() {
        DbKind::Sqlite => None,
        DbKind::Postgres => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            Some(
                rt.block_on(TestDb::of_kind(DbKind::Postgres))
                    .expect("a fresh PostgreSQL database"),
            )
        }
    }
}

/// The loopback ports one run of the server listens on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ports {
    pub relay_servers: u16,
    pub relay_devices: u16,
    pub admin: u16,
}

/// Writes a configuration file that keeps every listener on 127.0.0.1 on free ports.
pub(crate) fn write_config(path: &Path, data: &Path, db: Option<&TestDb>) -> Ports {
    let ports = Ports {
        relay_servers: free_port(),
        relay_devices: free_port(),
        admin: free_port(),
    };
    let database = db.map_or_else(String::new, |db| format!("database = {:?}\n", db.url()));
    let text = format!(
        "[server]\n\
         {database}\
         uplink_backoff_min = \"50ms\"\n\
         uplink_backoff_max = \"500ms\"\n\
         \n\
         [server.admin]\n\
         listen = \"127.0.0.1:{admin}\"\n\
         \n\
         [relay]\n\
         data_dir = {relay_dir:?}\n\
         server_listen = \"127.0.0.1:{servers}\"\n\
         device_listen = \"127.0.0.1:{devices}\"\n",
        admin = ports.admin,
        relay_dir = s(&data.join("relay")),
        servers = ports.relay_servers,
        devices = ports.relay_devices,
    );
    std::fs::write(path, text).expect("writing the configuration file");
    ports
}

/// `bramble admin --data DATA ARGS…`.
pub(crate) fn admin(root: &Path, data: &Path, args: &[&str]) -> Run {
    let mut all = vec!["admin", "--data", s(data)];
    all.extend_from_slice(args);
    bramble(root, all)
}

/// Starts `bramble serve` and waits until its administration API answers; returns the server
/// and the first `status --json`.
pub(crate) fn start_server(
    root: &Path,
    data: &Path,
    config: &Path,
    ports: Ports,
) -> (Background, Value) {
    let mut server = Background::start(
        "serve",
        root,
        ["serve", "--data", s(data), "--config", s(config)],
    );
    let admin_json = root.join(data).join("admin.json");
    let status = server.wait_for(
        "admin.json and an answer from the administration API",
        |_| {
            if !admin_json.exists() {
                return None;
            }
            let r = admin(root, data, &["status", "--json"]);
            r.status.success().then(|| r.json())
        },
    );
    let out = server.stdout();
    assert!(
        out.contains(&format!(
            "servers 127.0.0.1:{}, devices 127.0.0.1:{}",
            ports.relay_servers, ports.relay_devices
        )),
        "the banner does not show the configured relay ports\n{}",
        server.output()
    );
    assert!(
        out.contains(&format!("http://127.0.0.1:{}", ports.admin)),
        "the banner does not show the configured API address\n{}",
        server.output()
    );
    let cert = field(&out, "relay certificate").unwrap_or_default();
    assert!(
        is_fingerprint(cert),
        "the banner shows no certificate fingerprint ({cert:?})\n{}",
        server.output()
    );
    (server, status)
}

/// Polls `admin status --json` until the server is logged in at its relay.
pub(crate) fn wait_relay_up(root: &Path, data: &Path) -> Value {
    eventually("the relay link to be up", || {
        let st = admin(root, data, &["status", "--json"]).success().json();
        (st["relay"]["state"] == "up").then_some(st)
    })
}

fn is_srp_id(v: &str) -> bool {
    v.len() == 9 && v.starts_with('S') && v[1..].chars().all(|c| c.is_ascii_digit())
}

fn emails(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("a JSON array of users")
        .iter()
        .map(|u| u["email"].as_str().expect("an email"))
        .collect()
}

#[test]
fn serve_admin_stop_and_restart() {
    let tmp = tempdir();
    let root = tmp.path();
    let data: PathBuf = root.join("data");
    let config = root.join("bramble.toml");
    let db = test_db();

    // ---- first run
    let ports = write_config(&config, &data, db.as_ref());
    let (mut server, _) = start_server(root, &data, &config, ports);

    admin(root, &data, &["user", "add", ALICE, "--name", "Alice"])
        .success()
        .stdout_has(&format!("Added {ALICE}"))
        .stdout_has("Initializing");

    let table = admin(root, &data, &["user", "list"]).success();
    let row = table
        .stdout
        .lines()
        .find(|l| l.starts_with(ALICE))
        .unwrap_or_else(|| panic!("no row for {ALICE}\n{table}"));
    assert!(
        row.contains("Alice") && row.contains("Initializing"),
        "{table}"
    );
    assert!(table.stdout.starts_with("EMAIL"), "no header\n{table}");

    let list = admin(root, &data, &["user", "list", "--json"])
        .success()
        .json();
    assert_eq!(emails(&list), [ALICE], "{list:#}");
    assert_eq!(list[0]["status"], "Initializing", "{list:#}");
    assert_eq!(list[0]["display_name"], "Alice", "{list:#}");
    assert_eq!(list[0]["device"], Value::Null, "{list:#}");

    let shown = admin(root, &data, &["user", "show", ALICE, "--json"])
        .success()
        .json();
    assert_eq!(shown["email"], ALICE, "{shown:#}");
    assert_eq!(shown["status"], "Initializing", "{shown:#}");
    assert_eq!(shown["has_activation_password"], false, "{shown:#}");
    assert!(
        shown["history"].as_array().is_some_and(|h| !h.is_empty()),
        "no timeline: {shown:#}"
    );

    let set = admin(
        root,
        &data,
        &["user", "activation-password", ALICE, "--generate"],
    )
    .success();
    let password = set
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("Activation password for {ALICE}: ")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no generated password printed\n{set}"));
    assert!(password.len() >= 6, "a short password {password:?}\n{set}");
    admin(root, &data, &["user", "show", ALICE])
        .success()
        .stdout_has("Activation password  set");
    let shown = admin(root, &data, &["user", "show", ALICE, "--json"])
        .success()
        .json();
    assert_eq!(shown["has_activation_password"], true, "{shown:#}");
    assert!(
        !shown.to_string().contains(password),
        "the password is shown again: {shown:#}"
    );

    let status = wait_relay_up(root, &data);
    let srp_id = status["srp_id"].as_str().expect("an SRP id").to_owned();
    assert!(is_srp_id(&srp_id), "{status:#}");
    assert_eq!(status["users"], 1, "{status:#}");
    let backend = if db.is_some() { "postgres" } else { "sqlite" };
    assert_eq!(status["database"], backend, "{status:#}");
    assert!(
        server.stdout().contains(&srp_id),
        "the banner does not name {srp_id}\n{}",
        server.output()
    );
    admin(root, &data, &["status"])
        .success()
        .stdout_has(&srp_id)
        .stdout_has("connected");

    // Bob stays for the restart.
    admin(root, &data, &["user", "add", BOB]).success();
    admin(root, &data, &["user", "delete", ALICE])
        .success()
        .stdout_has(&format!("Deleted {ALICE}"));
    admin(root, &data, &["user", "show", ALICE])
        .code(1)
        .no_panic()
        .stderr_has(ALICE);
    admin(root, &data, &["user", "delete", ALICE])
        .code(1)
        .stderr_has(ALICE);

    // No server in that directory: say how to start one.
    let nowhere = root.join("nonexistent");
    bramble(root, ["admin", "--data", s(&nowhere), "user", "list"])
        .code(1)
        .stderr_has("bramble serve")
        .stderr_has(s(&nowhere));
    // A wrong token: say it is the token.
    let url = format!("http://127.0.0.1:{}", ports.admin);
    bramble(
        root,
        ["admin", "--url", &url, "--token", "wrong", "user", "list"],
    )
    .code(1)
    .stderr_has("token");
    // The right token by flag works from anywhere.
    let token = std::fs::read_to_string(data.join("admin-token")).expect("the token file");
    let by_url = bramble(
        root,
        [
            "admin",
            "--url",
            &url,
            "--token",
            token.trim(),
            "user",
            "list",
            "--json",
        ],
    )
    .success()
    .json();
    assert_eq!(emails(&by_url), [BOB]);

    server.assert_running();
    let stopped = server.terminate(STOP);
    assert_eq!(
        stopped.code(),
        Some(0),
        "serve exited with {stopped} on SIGTERM"
    );

    // Stopped: admin.json is still there, the API is not.
    admin(root, &data, &["user", "list"])
        .code(1)
        .stderr_has("does not answer")
        .stderr_has("bramble serve");

    // ---- second run on the same directory (new ports: the identity does not depend on them)
    let ports = write_config(&config, &data, db.as_ref());
    let (server, _) = start_server(root, &data, &config, ports);
    let status = wait_relay_up(root, &data);
    assert_eq!(
        status["srp_id"], srp_id,
        "the server's SRP identity changed across a restart"
    );
    let list = admin(root, &data, &["user", "list", "--json"])
        .success()
        .json();
    assert_eq!(emails(&list), [BOB], "{list:#}");
    let stopped = server.terminate(STOP);
    assert_eq!(
        stopped.code(),
        Some(0),
        "serve exited with {stopped} on SIGTERM"
    );
}

/// The whole activation through the binaries, on the embedded default with a relative data
/// directory: the relay mails the request into `data/mail`, the server's watcher sees it at
/// once (not on its minute-long rescan), and the phone reaches Activation Complete.
#[test]
fn a_phone_activates_through_the_binaries_with_a_relative_data_directory() {
    let tmp = tempdir();
    let root = tmp.path();
    let data = Path::new("data");
    let config = root.join("bramble.toml");
    let db = test_db();
    let ports = write_config(&config, data, db.as_ref());
    let (server, _) = start_server(root, data, &config, ports);
    wait_relay_up(root, data);
    admin(root, data, &["user", "add", ALICE]).success();
    let pw = admin(
        root,
        data,
        &["user", "activation-password", ALICE, "--generate", "--json"],
    )
    .success()
    .json();
    let password = pw["password"]
        .as_str()
        .expect("a generated password")
        .to_owned();
    let relay = format!("127.0.0.1:{}", ports.relay_devices);
    bramble(
        root,
        [
            "device",
            "--home",
            "phone",
            "--relay",
            &relay,
            "activate",
            ALICE,
            &password,
            "--timeout",
            "20s",
        ],
    )
    .success()
    .stdout_has_in_order(&[
        "Activating",
        "Verifying Encryption",
        "Encryption Verified. Waiting for Services.",
        "Services Received. Your email address, alice@example.com is now enabled.",
        "Activation Complete",
    ]);
    let shown = admin(root, data, &["user", "show", ALICE, "--json"])
        .success()
        .json();
    assert_eq!(shown["status"], "Completed", "{shown}");
    bramble(root, ["device", "--home", "phone", "ping"])
        .success()
        .stdout_has("Pong");
    // The phone's screen needs a terminal; without one it says so and leaves stdout clean.
    let tui = bramble(root, ["device", "--home", "phone", "tui"])
        .code(1)
        .no_panic()
        .stderr_has("needs a terminal");
    assert!(
        !tui.stdout.contains('\x1b'),
        "the terminal was touched\n{tui}"
    );
    let status = server.terminate(STOP);
    assert!(status.success(), "bramble serve exited with {status}");
}
