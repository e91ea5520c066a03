//! `bramble admin account|role|token|audit` against `bramble serve`: a security administrator
//! makes an administrator, a custom role and an API token, and finds what they did in the
//! audit log, as a table and as CSV.

use std::path::Path;

use crate::serve::{STOP, admin, start_server, test_db, write_config};
use crate::util::{Run, command, s, tempdir};

/// `bramble admin --data DATA ARGS…` with `input` on standard input.
fn admin_with_stdin(root: &Path, data: &Path, args: &[&str], input: &str) -> Run {
    let file = root.join("stdin.txt");
    std::fs::write(&file, input).expect("write stdin");
    let mut cmd = command(root);
    cmd.args(["admin", "--data", s(data)]).args(args);
    cmd.stdin(std::fs::File::open(&file).expect("open stdin"));
    Run::of(cmd)
}

#[test]
fn accounts_roles_tokens_and_the_audit_log_from_the_command_line() {
    let tmp = tempdir();
    let root = tmp.path();
    let data = Path::new("data");
    let config = root.join("bramble.toml");
    let db = test_db();
    let ports = write_config(&config, data, db.as_ref());
    let (server, _) = start_server(root, data, &config, ports);

    admin(root, data, &["role", "list"])
        .success()
        .stdout_has_in_order(&[
            "Security Administrator",
            "Enterprise Administrator",
            "Senior Helpdesk Administrator",
            "Junior Helpdesk Administrator",
            "Server Only Administrator",
            "User Only Administrator",
        ]);
    admin(root, data, &["role", "permissions"])
        .success()
        .stdout_has("audit.view");
    admin(
        root,
        data,
        &[
            "role",
            "add",
            "Mail Desk",
            "--permission",
            "user.view",
            "--permission",
            "user.edit",
        ],
    )
    .success()
    .stdout_has("Made the role Mail Desk with 2 permission(s).");
    admin(
        root,
        data,
        &["role", "add", "Bad", "--permission", "user.fly"],
    )
    .code(1)
    .stderr_has("user.fly");

    admin_with_stdin(
        root,
        data,
        &[
            "account",
            "add",
            "jo",
            "--display-name",
            "Jo Help",
            "--role",
            "Junior Helpdesk Administrator",
            "--password-stdin",
        ],
        "Jo-Console-Pw-1\n",
    )
    .success()
    .stdout_has("Added administrator jo.");
    admin(root, data, &["account", "grant", "jo", "Mail Desk"])
        .success()
        .stdout_has("jo now holds the role Mail Desk.");
    let jo = admin(root, data, &["account", "show", "jo", "--json"])
        .success()
        .json();
    assert_eq!(jo["has_password"], true, "{jo}");
    let roles = jo["roles"].to_string();
    assert!(
        roles.contains("Mail Desk") && roles.contains("Junior Helpdesk"),
        "{jo}"
    );
    admin(root, data, &["account", "list"])
        .success()
        .stdout_has_in_order(&["admin", "jo", "Jo Help"]);

    // an API token for jo works for what jo may do, and not for more
    let t = admin(
        root,
        data,
        &["token", "add", "monitoring", "--account", "jo", "--json"],
    )
    .success()
    .json();
    let secret = t["token"].as_str().expect("a secret").to_owned();
    let url = format!("http://127.0.0.1:{}", ports.admin);
    let with_token = |args: &[&str]| {
        let mut cmd = command(root);
        cmd.args(["admin", "--url", &url, "--token", &secret])
            .args(args);
        Run::of(cmd)
    };
    with_token(&["user", "list"]).success();
    with_token(&["account", "list"]).code(1).stderr_has("role");
    admin(root, data, &["token", "list", "--all"])
        .success()
        .stdout_has("monitoring");
    admin(root, data, &["token", "list"])
        .success()
        .stdout_has("ID");

    admin(root, data, &["account", "edit", "jo", "--disable"])
        .success()
        .stdout_has("(disabled)");
    with_token(&["user", "list"]).code(1);

    // all of it in the audit log
    admin(root, data, &["audit", "--actor", "admin", "--limit", "100"])
        .success()
        .stdout_has_in_order(&[
            "Edit administrator",
            "Make API token",
            "Assign role",
            "Add administrator",
            "Create role",
        ]);
    admin(root, data, &["audit", "--result", "denied"])
        .success()
        .stdout_has("List administrators");
    let csv = admin(root, data, &["audit", "--csv", "--text", "Mail Desk"]).success();
    let first = csv.stdout.lines().next().unwrap_or_default().to_owned();
    assert!(
        first.contains("actor") && first.contains("result"),
        "{first}"
    );
    assert!(csv.stdout.contains("Create role"), "{}", csv.stdout);
    assert!(!csv.stdout.contains("Jo-Console-Pw-1"), "{}", csv.stdout);
    let json = admin(root, data, &["audit", "--limit", "3", "--json"])
        .success()
        .json();
    assert_eq!(json.as_array().map(Vec::len), Some(3), "{json}");

    admin(root, data, &["account", "delete", "jo"]).success();
    admin(root, data, &["role", "delete", "Mail Desk"]).success();
    let status = server.terminate(STOP);
    assert!(status.success(), "bramble serve exited with {status}");
}
