//! The policy service through the binaries, as an administrator and a phone user would drive
//! it: `bramble admin policy|group|command|software` against `bramble serve`, and a phone
//! (`bramble device`) that syncs, obeys and reports back. The server-side details (foreign
//! domain keys, the old key refused after regeneration, resends) are proven in the server's
//! own tests; this one proves the commands an administrator types do what they say.

use std::path::Path;

use serde_json::Value;

use crate::serve::{STOP, admin, start_server, test_db, wait_relay_up, write_config};
use crate::util::{Run, bramble, eventually, s, tempdir};

const ALICE: &str = "alice@example.com";

/// `bramble device --home phone ARGS…`.
fn phone(root: &Path, args: &[&str]) -> Run {
    let mut all = vec!["device", "--home", "phone"];
    all.extend_from_slice(args);
    bramble(root, all)
}

/// Gives alice a fresh activation password and activates the phone with it.
fn activate(root: &Path, data: &Path, relay: &str) {
    let pw = admin(
        root,
        data,
        &["user", "activation-password", ALICE, "--generate", "--json"],
    )
    .success()
    .json();
    let password = pw["password"].as_str().expect("a generated password");
    phone(
        root,
        &[
            "--relay",
            relay,
            "activate",
            ALICE,
            password,
            "--timeout",
            "20s",
        ],
    )
    .success()
    .stdout_has("Activation Complete");
}

/// Syncs the phone until `done` holds on the server's side; everything the phone printed.
fn sync_until(root: &Path, what: &str, mut done: impl FnMut() -> bool) -> String {
    let mut printed = String::new();
    eventually(what, || {
        let r = phone(root, &["sync", "--wait", "1s"]);
        // A wipe or a removal unbinds the phone; the server records it just after.
        let unbound = r.stderr.contains("This device is not activated");
        let r = if unbound { r } else { r.success() };
        printed.push_str(&r.stdout);
        done().then_some(())
    });
    printed
}

/// The command's JSON view.
fn command(root: &Path, data: &Path, id: u64) -> Value {
    admin(root, data, &["command", "show", &id.to_string(), "--json"])
        .success()
        .json()
}

/// Gives a command and returns its number, checking the receipt.
fn give(root: &Path, data: &Path, args: &[&str]) -> u64 {
    let mut all = vec!["command"];
    all.extend_from_slice(args);
    all.push("--json");
    let receipt = admin(root, data, &all).success().json();
    assert_eq!(receipt["state"], "queued", "{receipt:#}");
    assert_eq!(receipt["user"], ALICE, "{receipt:#}");
    receipt["id"].as_u64().expect("a command number")
}

/// Syncs until the command is final (or pending, for a delayed wipe); its view.
fn carried_out(root: &Path, data: &Path, id: u64, state: &str) -> (String, Value) {
    let mut view = Value::Null;
    let printed = sync_until(root, &format!("command {id} to be {state}"), || {
        view = command(root, data, id);
        view["state"] == state
    });
    (printed, view)
}

#[test]
fn an_administrator_manages_a_phone_with_policies_commands_and_software() {
    let tmp = tempdir();
    let root = tmp.path();
    let data = Path::new("data");
    let config = root.join("bramble.toml");
    let db = test_db();
    let ports = write_config(&config, data, db.as_ref());
    let (server, _) = start_server(root, data, &config, ports);
    wait_relay_up(root, data);
    let relay = format!("127.0.0.1:{}", ports.relay_devices);
    admin(root, data, &["user", "add", ALICE, "--name", "Alice"]).success();
    activate(root, data, &relay);

    // ---- IT policies: the presets, a custom one in two versions, assigned through a group
    admin(root, data, &["policy", "list"])
        .success()
        .stdout_has_in_order(&[
            "Advanced Security",
            "Basic Password Security",
            "Default",
            "Individual-Liable Devices",
            "Medium Password Security",
            "Medium Security with No 3rd Party Applications",
        ]);
    admin(
        root,
        data,
        &[
            "policy",
            "create",
            "Sales",
            "--from",
            "Basic Password Security",
            "--set",
            "password_min_length=8",
        ],
    )
    .success()
    .stdout_has("Created IT policy Sales from Basic Password Security.");
    admin(
        root,
        data,
        &[
            "policy",
            "set",
            "Sales",
            "password_complexity=letters and digits",
            "--note",
            "letters and digits from now on",
        ],
    )
    .success()
    .stdout_has("IT policy Sales is now version 2");
    admin(root, data, &["policy", "diff", "Sales", "1", "2"])
        .success()
        .stdout_has("password_complexity: none -> letters and digits");
    let versions = admin(root, data, &["policy", "versions", "Sales", "--json"])
        .success()
        .json();
    assert_eq!(
        versions.as_array().map(Vec::len),
        Some(2),
        "two versions: {versions:#}"
    );
    // A rule that does not exist, a value of the wrong kind: refused in words, nothing changes.
    admin(root, data, &["policy", "set", "Sales", "no_such_rule=1"])
        .code(1)
        .no_panic()
        .stderr_has("no_such_rule");
    admin(
        root,
        data,
        &["policy", "set", "Sales", "password_min_length=lots"],
    )
    .code(1)
    .no_panic()
    .stderr_has("password_min_length");
    admin(root, data, &["group", "add", "Sales"]).success();
    admin(root, data, &["group", "add-member", "Sales", ALICE])
        .success()
        .stdout_has(&format!("{ALICE} is in group Sales now"));
    admin(
        root,
        data,
        &["policy", "assign", "Sales", "--group", "Sales"],
    )
    .success()
    .stdout_has("Assigned IT policy Sales to group Sales");

    // The phone gets version 2 and says what keeps it from complying; the server hears it.
    let printed = sync_until(
        root,
        "the server to hear the phone applied Sales v2",
        || {
            let u = admin(root, data, &["user", "show", ALICE, "--json"])
                .success()
                .json();
            let d = &u["policy"]["device"];
            d["version"] == 2 && d["applied"] == true
        },
    );
    assert!(
        printed
            .contains("IT policy Sales v2 applied; not compliant: A device password is required"),
        "{printed}"
    );
    phone(root, &["status"])
        .success()
        .stdout_has("Policy in force     Sales (version 2)")
        .stdout_has("Not compliant       A device password is required");
    admin(root, data, &["user", "show", ALICE])
        .success()
        .stdout_has("Groups     Sales")
        .stdout_has("IT policy  Sales v2 (from group Sales)")
        .stdout_has("* group Sales")
        .stdout_has("not compliant:")
        .stdout_has("A device password is required and none is set");
    // The policy's rules hold on the phone: too short a password is refused.
    phone(root, &["password", "set", "--new", "short"])
        .code(1)
        .no_panic()
        .stderr_has("at least 8 characters");
    phone(root, &["password", "set", "--new", "abcd1234"])
        .success()
        .stdout_has("The device password is set.");
    eventually("the server to hear the phone complies", || {
        admin(root, data, &["user", "show", ALICE])
            .success()
            .stdout
            .contains(", compliant")
            .then_some(())
    });

    // ---- Specify a new device password and lock the device
    let lock = give(root, data, &["lock", ALICE, "--new-password", "Unlock123"]);
    let (printed, view) = carried_out(root, data, lock, "done");
    assert!(
        printed.contains("Device locked by your administrator, who set a new device password."),
        "{printed}"
    );
    let states: Vec<&str> = view["history"]
        .as_array()
        .expect("a timeline")
        .iter()
        .filter_map(|h| h["state"].as_str())
        .collect();
    assert_eq!(states, ["queued", "sent", "done"], "{view:#}");
    admin(root, data, &["command", "show", &lock.to_string()])
        .success()
        .stdout_has(&format!("Command {lock} (lock) for {ALICE}: done"))
        .stdout_has_in_order(&["Timeline", "queued", "sent", "done"]);
    // Locked: the phone shows nothing until unlocked, and only with the new password.
    phone(root, &["inbox"])
        .code(1)
        .no_panic()
        .stderr_has("This device is locked");
    phone(root, &["unlock", "--password", "abcd1234"])
        .code(1)
        .stderr_has("That is not the device password");
    phone(root, &["unlock", "--password", "Unlock123"])
        .success()
        .stdout_has("The device is unlocked.");
    phone(root, &["inbox"]).success();

    // ---- Software: a package, a configuration requiring it, then not permitting it
    let package: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let file = root.join("maps.pkg");
    std::fs::write(&file, &package).expect("writing the package");
    admin(
        root,
        data,
        &[
            "software",
            "upload",
            s(&file),
            "--name",
            "Maps",
            "--version",
            "2.1",
        ],
    )
    .success()
    .stdout_has("Uploaded Maps 2.1");
    admin(root, data, &["software", "config", "create", "Field"]).success();
    admin(
        root,
        data,
        &[
            "software",
            "config",
            "app",
            "Field",
            "Maps",
            "--disposition",
            "required",
            "--version",
            "2.1",
        ],
    )
    .success();
    admin(
        root,
        data,
        &["software", "assign", "Field", "--user", ALICE],
    )
    .success()
    .stdout_has("Assigned software configuration Field");
    let printed = sync_until(root, "the installing job to be done", || {
        let jobs = admin(root, data, &["software", "jobs", "--json"])
            .success()
            .json();
        jobs[0]["state"] == "done"
    });
    assert!(printed.contains("Installed Maps 2.1"), "{printed}");
    let apps = phone(root, &["apps", "--json"]).success().json();
    assert_eq!(apps["installed"][0]["name"], "Maps", "{apps:#}");
    assert_eq!(apps["installed"][0]["size"], 300_000, "{apps:#}");
    admin(root, data, &["user", "show", ALICE])
        .success()
        .stdout_has("Software   Field (assigned to the user)")
        .stdout_has("1 installed");
    // The phone's user cannot remove what the organization requires.
    phone(root, &["apps", "remove", "Maps"]).code(1).no_panic();
    admin(
        root,
        data,
        &[
            "software",
            "config",
            "app",
            "Field",
            "Maps",
            "--disposition",
            "not-permitted",
        ],
    )
    .success();
    let printed = sync_until(root, "the removing job to be done", || {
        let jobs = admin(root, data, &["software", "jobs", "--json"])
            .success()
            .json();
        jobs.as_array().map(Vec::len) == Some(2) && jobs[0]["state"] == "done"
    });
    assert!(printed.contains("Removed Maps 2.1"), "{printed}");
    let apps = phone(root, &["apps", "--json"]).success().json();
    assert_eq!(apps["installed"], serde_json::json!([]), "{apps:#}");

    // ---- Regenerate the encryption key; the phone goes on talking with the new one
    let rekey = give(root, data, &["regenerate-key", ALICE]);
    let (printed, _) = carried_out(root, data, rekey, "done");
    assert!(
        printed.contains("The device now uses its new encryption key (generation 2)."),
        "{printed}"
    );
    phone(root, &["status"])
        .success()
        .stdout_has("Key generation      2");
    phone(root, &["ping"]).success().stdout_has("Pong");

    // ---- Resend the IT policy and the service books
    let policy = give(root, data, &["resend-policy", ALICE]);
    let books = give(root, data, &["resend-service-books", ALICE]);
    let (printed, _) = carried_out(root, data, books, "done");
    let (more, view) = carried_out(root, data, policy, "done");
    let printed = printed + &more;
    assert!(printed.contains("IT policy Sales v2 applied"), "{printed}");
    assert!(
        printed.contains("Service books installed: CMIME"),
        "{printed}"
    );
    assert!(
        view["detail"]
            .as_str()
            .is_some_and(|d| d.contains("version 2 applied")),
        "{view:#}"
    );

    // ---- A delayed wipe the user may cancel, cancelled on the phone
    let wipe = give(
        root,
        data,
        &["wipe", ALICE, "--delay-hours", "1", "--user-may-cancel"],
    );
    let (printed, _) = carried_out(root, data, wipe, "pending");
    assert!(printed.contains("Wipe scheduled at"), "{printed}");
    phone(root, &["status"])
        .success()
        .stdout_has("Scheduled wipe");
    phone(root, &["wipe-cancel"])
        .success()
        .stdout_has("is cancelled");
    eventually("the server to hear the wipe was cancelled", || {
        (command(root, data, wipe)["state"] == "cancelled").then_some(())
    });

    // ---- Delete only the organization's data and remove the device
    let remove = give(root, data, &["remove-org-data", ALICE]);
    let (printed, _) = carried_out(root, data, remove, "done");
    assert!(
        printed.contains("Your administrator removed the organization's data"),
        "{printed}"
    );
    phone(root, &["status"])
        .success()
        .stdout_has("none: this device is not activated")
        // The user's own device password stays: it is not the organization's.
        .stdout_has("Device password     set");
    let u = admin(root, data, &["user", "show", ALICE, "--json"])
        .success()
        .json();
    assert_eq!(u["status"], "Initializing", "{u:#}");
    assert_eq!(u["device"], Value::Null, "{u:#}");

    // ---- Activate again, then delete all device data and disable the device
    activate(root, data, &relay);
    phone(root, &["inbox"]).success().stdout_has("No messages.");
    let store = root.join("phone").join("mail.db");
    assert!(store.exists(), "no mail store after activation");
    let wipe = give(root, data, &["wipe", ALICE]);
    let (printed, _) = carried_out(root, data, wipe, "done");
    assert!(
        printed.contains("This device was wiped by your administrator"),
        "{printed}"
    );
    assert!(!store.exists(), "the mail store survived the wipe");
    phone(root, &["status"])
        .success()
        .stdout_has("none: this device is not activated")
        .stdout_has("Device password     not set");
    admin(root, data, &["command", "list"])
        .success()
        .stdout_has_in_order(&[
            "wipe",
            "done",
            "remove-org-data",
            "done",
            "wipe",
            "cancelled",
            "resend-service-books",
            "done",
            "resend-policy",
            "done",
            "regenerate-key",
            "done",
            "lock",
            "done",
        ]);

    let status = server.terminate(STOP);
    assert!(status.success(), "bramble serve exited with {status}");
}
