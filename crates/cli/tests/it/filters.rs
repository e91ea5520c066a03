//! `bramble admin filter …` against a running `bramble serve`: push-mail filters added,
//! listed, shown, changed, moved and removed as an administrator would.

use std::path::Path;

use bramble_testkit::{DbKind, TestDb, free_port};
use serde_json::Value;

use crate::util::{Background, Run, bramble, s, tempdir};

const ALICE: &str = "alice@example.com";

/// A fresh PostgreSQL database when `BRAMBLE_TEST_DB` asks for one; else `None` (SQLite in
/// the data directory).
fn test_db() -> Option<TestDb> {
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

/// Starts `bramble serve` (with its in-process relay) on free loopback ports and waits until
/// its administration API answers.
fn start_server(root: &Path, data: &Path, db: Option<&TestDb>) -> Background {
    let config = root.join("bramble.toml");
    let database = db.map_or_else(String::new, |db| format!("database = {:?}\n", db.url()));
    let text = format!(
        "[server]\n\
         {database}\
         \n\
         [server.admin]\n\
         listen = \"127.0.0.1:{admin}\"\n\
         \n\
         [relay]\n\
         data_dir = {relay_dir:?}\n\
         server_listen = \"127.0.0.1:{servers}\"\n\
         device_listen = \"127.0.0.1:{devices}\"\n",
        admin = free_port(),
        relay_dir = s(&data.join("relay")),
        servers = free_port(),
        devices = free_port(),
    );
    std::fs::write(&config, text).expect("writing the configuration file");
    let mut server = Background::start(
        "serve",
        root,
        ["serve", "--data", s(data), "--config", s(&config)],
    );
    let admin_json = data.join("admin.json");
    server.wait_for("an answer from the administration API", |_| {
        (admin_json.exists() && admin(root, data, &["status"]).status.success()).then_some(())
    });
    server
}

/// `bramble admin --data DATA ARGS…`.
fn admin(root: &Path, data: &Path, args: &[&str]) -> Run {
    let mut all = vec!["admin", "--data", s(data)];
    all.extend_from_slice(args);
    bramble(root, all)
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("a JSON array of filters")
        .iter()
        .map(|f| f["name"].as_str().expect("a name"))
        .collect()
}

fn id_of(filter: &Value) -> String {
    filter["id"].as_i64().expect("an id").to_string()
}

#[test]
fn filters_are_managed_with_bramble_admin() {
    let tmp = tempdir();
    let root = tmp.path();
    let data = root.join("data");
    let db = test_db();
    let server = start_server(root, &data, db.as_ref());
    let admin = |args: &[&str]| admin(root, &data, args);

    admin(&["filter", "list"])
        .success()
        .stdout_has("No global filters");

    let boss = admin(&[
        "filter",
        "add",
        "Boss",
        "--from",
        "*@boss.example.com",
        "--importance",
        "high",
        "--action",
        "priority",
    ])
    .success()
    .stdout_has("Added filter")
    .stdout_has("position 1 of the global filters")
    .stdout_has("forward with priority");
    let boss_id = boss
        .stdout
        .split_whitespace()
        .nth(2)
        .expect("Added filter ID …")
        .to_owned();

    let spam = admin(&[
        "filter",
        "add",
        "Spam",
        "--subject",
        "[spam]",
        "--action",
        "drop",
        "--json",
    ])
    .success()
    .json();
    assert_eq!(spam["action"], "do_not_forward", "{spam:#}");
    assert_eq!(spam["conditions"]["subject"], "[spam]", "{spam:#}");
    assert_eq!(spam["position"], 2, "{spam:#}");
    let top = admin(&[
        "filter",
        "add",
        "Top",
        "--action",
        "forward",
        "--position",
        "1",
        "--disabled",
        "--json",
    ])
    .success()
    .json();
    assert_eq!(top["enabled"], false, "{top:#}");

    let table = admin(&["filter", "list"]).success();
    assert!(table.stdout.starts_with("ID"), "no header\n{table}");
    let rows: Vec<&str> = table.stdout.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{table}");
    assert!(
        rows[0].contains("Top") && rows[0].contains("no") && rows[0].contains("every message"),
        "{table}"
    );
    assert!(
        rows[1].starts_with(&boss_id)
            && rows[1].contains("from *@boss.example.com, importance high"),
        "{table}"
    );
    let list = admin(&["filter", "list", "--json"]).success().json();
    assert_eq!(names(&list), ["Top", "Boss", "Spam"], "{list:#}");

    // A user's own filters.
    admin(&["filter", "list", "--user", ALICE])
        .code(1)
        .no_panic()
        .stderr_has("no user with address alice@example.com");
    admin(&["user", "add", ALICE]).success();
    admin(&["filter", "list", "--user", ALICE])
        .success()
        .stdout_has("has no filters of their own");
    let mine = admin(&[
        "filter", "add", "Mine", "--user", ALICE, "--to", "alice*", "--action", "forward", "--json",
    ])
    .success()
    .json();
    assert_eq!(mine["user"], ALICE, "{mine:#}");
    let theirs = admin(&["filter", "list", "--user", ALICE, "--json"])
        .success()
        .json();
    assert_eq!(names(&theirs), ["Mine"], "{theirs:#}");

    admin(&["filter", "show", &boss_id])
        .success()
        .stdout_has("\"Boss\"")
        .stdout_has_in_order(&["Scope", "global", "Position    2", "Enabled     yes"])
        .stdout_has("*@boss.example.com");

    // Edit: what is given changes; an empty pattern and `any` remove conditions.
    let edited = admin(&[
        "filter",
        "edit",
        &boss_id,
        "--subject",
        "budget",
        "--from",
        "",
        "--importance",
        "any",
        "--disable",
        "--json",
    ])
    .success()
    .json();
    assert_eq!(edited["enabled"], false, "{edited:#}");
    assert_eq!(edited["action"], "forward_with_priority", "{edited:#}");
    assert_eq!(
        edited["conditions"],
        serde_json::json!({ "from": null, "to": null, "cc": null, "subject": "budget",
                            "importance": null }),
    );
    admin(&["filter", "edit", &boss_id, "--enable", "--name", "The boss"])
        .success()
        .stdout_has("Changed filter")
        .stdout_has("Enabled     yes");
    admin(&["filter", "edit", &boss_id]).code(2).no_panic();
    admin(&["filter", "edit", &boss_id, "--enable", "--disable"]).code(2);

    admin(&["filter", "move", &boss_id, "1"])
        .success()
        .stdout_has("is now at position 1 of the global filters");
    let list = admin(&["filter", "list", "--json"]).success().json();
    assert_eq!(names(&list), ["The boss", "Top", "Spam"], "{list:#}");

    // Mistakes: exit 1 with the server's sentence, or 2 for wrong usage.
    admin(&["filter", "add", "spam", "--action", "forward"])
        .code(1)
        .stderr_has("the global filters already have one named \"spam\"");
    let long = "x".repeat(257);
    admin(&[
        "filter",
        "add",
        "Long",
        "--subject",
        &long,
        "--action",
        "forward",
    ])
    .code(1)
    .stderr_has("at most 256 are allowed");
    admin(&["filter", "add", "Bad", "--action", "bounce"]).code(2);
    admin(&[
        "filter",
        "add",
        "Bad",
        "--importance",
        "urgent",
        "--action",
        "drop",
    ])
    .code(2);
    admin(&["filter", "show", "seven"]).code(2);
    admin(&["filter", "move", &boss_id, "0"])
        .code(1)
        .stderr_has("filter positions start at 1");

    let spam_id = id_of(&spam);
    admin(&["filter", "remove", &spam_id])
        .success()
        .stdout_has(&format!("Removed filter {spam_id}"));
    admin(&["filter", "show", &spam_id])
        .code(1)
        .stderr_has(&format!("no filter with id {spam_id}"));
    admin(&["filter", "remove", &spam_id]).code(1);
    let list = admin(&["filter", "list", "--json"]).success().json();
    assert_eq!(names(&list), ["The boss", "Top"], "{list:#}");
    let positions: Vec<i64> = list
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|f| f["position"].as_i64())
        .collect();
    assert_eq!(positions, [1, 2]);

    let status = server.terminate(std::time::Duration::from_secs(10));
    assert!(status.success(), "bramble serve exited with {status}");
}
