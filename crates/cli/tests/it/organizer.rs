//! Organizer synchronization through the binaries: `bramble serve` with `[server.sync]` on a
//! real Radicale (its service account), a phone driven by `bramble device … contacts|
//! calendar|tasks|memos|options`, and `bramble admin sync`.

use std::path::Path;

use bramble_testkit::DavServer;

use crate::serve::{STOP, admin, start_server, test_db, wait_relay_up, write_config};
use crate::util::{Run, bramble, eventually, tempdir};

const ALICE: &str = "alice@example.com";

fn phone(root: &Path, args: &[&str]) -> Run {
    let mut all = vec!["device", "--home", "phone"];
    all.extend_from_slice(args);
    bramble(root, all)
}

/// Records of `db` the server knows of on each side: (on the server, on the device).
fn counts(root: &Path, data: &Path, db: &str) -> (u64, u64) {
    let v = admin(root, data, &["sync", "show", ALICE, "--json"])
        .success()
        .json();
    let r = v["records"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["database"] == db))
        .cloned()
        .unwrap_or_default();
    (
        r["on_server"].as_u64().unwrap_or(0),
        r["on_device"].as_u64().unwrap_or(0),
    )
}

#[test]
fn a_phone_keeps_its_organizer_in_step_with_the_caldav_server() {
    let dav = DavServer::start(&[]).expect("Radicale");
    let tmp = tempdir();
    let root = tmp.path();
    let data = Path::new("data");
    let config = root.join("bramble.toml");
    let db = test_db();
    let ports = write_config(&config, data, db.as_ref());
    let (user, password) = dav.service_account();
    let mut text = std::fs::read_to_string(&config).expect("the configuration");
    text.push_str(&format!(
        "\n[server.sync]\nurl = {:?}\nservice_user = {user:?}\nservice_password = {password:?}\ninterval = \"500ms\"\n",
        dav.url()
    ));
    std::fs::write(&config, text).expect("writing the configuration");
    let (server, _) = start_server(root, data, &config, ports);
    wait_relay_up(root, data);
    let relay = format!("127.0.0.1:{}", ports.relay_devices);

    // Before activation: a contact of the phone's own, kept on the phone.
    phone(
        root,
        &[
            "contacts",
            "add",
            "--name",
            "Dana Own",
            "--phone",
            "+1 555 0101",
        ],
    )
    .success()
    .stdout_has("Added contact")
    .stdout_has("the change stays on the device");
    // What cannot be a record is refused in words.
    phone(
        root,
        &[
            "calendar",
            "add",
            "--title",
            "Lunch",
            "--start",
            "next tuesday",
        ],
    )
    .code(1)
    .no_panic()
    .stderr_has("next tuesday");

    admin(root, data, &["user", "add", ALICE]).success();
    admin(root, data, &["sync", "show", ALICE])
        .success()
        .stdout_has_in_order(&[
            "calendar",
            "on",
            "bidirectional",
            "server-wins",
            "server default",
        ]);
    let pw = admin(
        root,
        data,
        &["user", "activation-password", ALICE, "--generate", "--json"],
    )
    .success()
    .json();
    let pw = pw["password"].as_str().expect("a password").to_owned();
    phone(
        root,
        &[
            "--relay",
            &relay,
            "activate",
            ALICE,
            &pw,
            "--timeout",
            "30s",
        ],
    )
    .success()
    .stdout_has_in_order(&[
        "Services Received",
        "Slow synchronization",
        "Activation Complete",
    ]);
    // The phone's own contact went to the organizer server in the slow sync.
    eventually("the server to know the contact on both sides", || {
        (counts(root, data, "contacts") == (1, 1)).then_some(())
    });

    // Changes on the phone go at once.
    let added = phone(
        root,
        &[
            "calendar",
            "add",
            "--title",
            "Quarterly review",
            "--start",
            "2026-12-10 09:00",
            "--end",
            "2026-12-10 10:00",
            "--location",
            "Room 4",
        ],
    )
    .success()
    .stdout_has("Added event");
    assert!(!added.stdout.contains("kept and will be sent"), "{added}");
    eventually("the event on the server", || {
        (counts(root, data, "calendar") == (1, 1)).then_some(())
    });
    phone(
        root,
        &[
            "tasks",
            "add",
            "--title",
            "File report",
            "--due",
            "2026-12-05",
        ],
    )
    .success();
    let tasks = phone(root, &["tasks", "--json"]).success().json();
    let task = tasks[0]["uid"].as_str().expect("a task uid").to_owned();
    phone(root, &["tasks", "complete", &task])
        .success()
        .stdout_has("done");
    phone(
        root,
        &["memos", "add", "--title", "Ideas", "--note", "more coffee"],
    )
    .success();
    eventually("the task and the memo on the server", || {
        (counts(root, data, "tasks") == (1, 1) && counts(root, data, "memos") == (1, 1))
            .then_some(())
    });
    let list = phone(root, &["calendar"]).success();
    assert!(
        list.stdout.contains("Quarterly review") && list.stdout.contains("Room 4"),
        "{list}"
    );
    let contacts = phone(root, &["contacts", "--json"]).success().json();
    let dana = contacts[0]["uid"]
        .as_str()
        .expect("a contact uid")
        .to_owned();
    phone(root, &["contacts", "edit", &dana, "--org", "Acme"])
        .success()
        .stdout_has("Changed contact");
    phone(root, &["contacts", "show", &dana])
        .success()
        .stdout_has("Acme");
    phone(root, &["contacts", "delete", &dana])
        .success()
        .stdout_has("Deleted contact");
    eventually("the deletion on the server", || {
        (counts(root, data, "contacts") == (0, 0)).then_some(())
    });

    // An administrator changes a setting; the phone gets the new configuration.
    admin(
        root,
        data,
        &[
            "sync",
            "set",
            "memos",
            "--user",
            ALICE,
            "--direction",
            "server-to-device",
        ],
    )
    .success()
    .stdout_has("Changed how memos is synchronized");
    admin(root, data, &["sync", "show", ALICE])
        .success()
        .stdout_has_in_order(&["memos", "on", "server-to-device", "server-wins", "user"]);
    admin(
        root,
        data,
        &["sync", "set", "notes", "--user", ALICE, "--off"],
    )
    .code(1)
    .no_panic()
    .stderr_has("notes");
    phone(root, &["sync", "--wait", "2s"]).success();
    phone(root, &["memos", "add", "--title", "Local thought"])
        .success()
        .stdout_has("synchronized from the server only");

    // Options, backed up.
    phone(root, &["options", "set", "ringtone", "Antelope"])
        .success()
        .stdout_has("backed up");
    eventually("the backup on the server", || {
        let v = admin(root, data, &["sync", "show", ALICE, "--json"])
            .success()
            .json();
        v["last_backup"].is_object().then_some(())
    });

    let status = server.terminate(STOP);
    assert!(status.success(), "bramble serve exited with {status}");
}
