//! `bramble admin directory` against `bramble serve` reading a real slapd: search, import by
//! mail address, synchronize, and the words an administrator sees when the directory is down.

use std::path::Path;

use bramble_testkit::ldap::{ADMIN_DN, ADMIN_PASSWORD, PEOPLE_DN};
use bramble_testkit::{LdapServer, Person};

use crate::serve::{STOP, admin, start_server, test_db, write_config};
use crate::util::tempdir;

#[test]
fn people_are_found_imported_and_synchronized_from_the_command_line() {
    let mut ldap = LdapServer::start(&[
        Person::new("alice", "Alice Example", "alice@example.test"),
        Person::new("bob", "Bob Example", "bob@example.test"),
    ])
    .expect("slapd");
    let tmp = tempdir();
    let root = tmp.path();
    let data = Path::new("data");
    let config = root.join("bramble.toml");
    let db = test_db();
    let ports = write_config(&config, data, db.as_ref());
    std::fs::write(root.join("ldap-password"), ADMIN_PASSWORD).expect("password file");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(&format!(
        "\n[server.directory]\nurl = {:?}\nbase_dn = {PEOPLE_DN:?}\nbind_dn = {ADMIN_DN:?}\n\
         bind_password_file = {:?}\nsync_interval = \"0s\"\ntimeout = \"3s\"\n",
        ldap.url(),
        root.join("ldap-password").display().to_string(),
    ));
    std::fs::write(&config, text).expect("config");
    let (server, status) = start_server(root, data, &config, ports);
    assert!(
        status.to_string().contains("Directory (MailStore service)"),
        "{status}"
    );

    admin(root, data, &["directory", "show"])
        .success()
        .stdout_has_in_order(&["Directory", &ldap.url(), "Base DN", PEOPLE_DN]);
    admin(root, data, &["directory", "search", "example"])
        .success()
        .stdout_has_in_order(&[
            "NAME",
            "MAIL",
            "Alice Example",
            "alice@example.test",
            "Bob Example",
        ]);
    let found = admin(root, data, &["directory", "search", "bob", "--json"])
        .success()
        .json();
    assert_eq!(found["entries"][0]["mail"], "bob@example.test", "{found}");
    assert_eq!(found["more"], false);

    admin(root, data, &["directory", "import", "alice@example.test"])
        .success()
        .stdout_has_in_order(&[
            "Added alice@example.test (Alice Example) (status Initializing).",
            "Next: bramble admin user activation-password alice@example.test",
        ]);
    admin(root, data, &["directory", "import", "nobody@example.test"])
        .code(1)
        .stderr_has("nobody in the directory has the mail address nobody@example.test");
    admin(root, data, &["user", "show", "alice@example.test"])
        .success()
        .stdout_has("Alice Example");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(ldap.modify_person("alice", &[("cn", "Alice Liddell")]))
        .expect("rename alice");
    admin(root, data, &["directory", "sync"])
        .success()
        .stdout_has_in_order(&[
            "1 users compared",
            "Names changed:",
            "alice@example.test",
            "Alice Example",
            "Alice Liddell",
        ]);
    let report = admin(root, data, &["directory", "sync", "--json"])
        .success()
        .json();
    assert_eq!(report["checked"], 1, "{report}");
    assert_eq!(report["renamed"], serde_json::json!([]), "{report}");

    ldap.kill();
    admin(root, data, &["directory", "sync"])
        .code(1)
        .no_panic()
        .stderr_has("cannot be reached")
        .stderr_has("nothing was changed");
    assert!(server.terminate(STOP).success());
}
