//! Flag parsing: every command's help works (clap checks a command's definition when it is
//! built, and panics on a bad one), and wrong usage is exit code 2.

use std::path::Path;

use crate::util::{bramble, tempdir};

/// The subcommands a help text lists under "Commands:", without `help`.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// Runs `bramble PATH… --help` and recurses into the subcommands it lists; returns how many
/// commands it saw.
fn walk(cwd: &Path, path: &mut Vec<String>) -> usize {
    let mut args = path.clone();
    args.push("--help".into());
    let run = bramble(cwd, &args)
        .success()
        .no_panic()
        .stdout_has("Usage: bramble");
    let mut seen = 1;
    for sub in subcommands(&run.stdout) {
        path.push(sub);
        seen += walk(cwd, path);
        path.pop();
    }
    seen
}

#[test]
fn every_command_has_help() {
    let tmp = tempdir();
    let seen = walk(tmp.path(), &mut Vec::new());
    // bramble; serve; relay, srp and 5 srp commands; admin, status, user and 5 user
    // commands; device and its 4; demo. More may come, never fewer.
    assert!(seen >= 23, "only {seen} commands found in the help texts");
    bramble(tmp.path(), ["--version"])
        .success()
        .stdout_has("bramble ");
}

#[test]
fn wrong_usage_is_exit_2() {
    let tmp = tempdir();
    bramble(tmp.path(), ["no-such-command"]).code(2);
    bramble(tmp.path(), ["device", "pin"])
        .code(2)
        .no_panic()
        .stderr_has("--home");
    bramble(
        tmp.path(),
        ["admin", "--url", "http://127.0.0.1:1", "user", "list"],
    )
    .code(2)
    .stderr_has("--token");
    bramble(
        tmp.path(),
        ["admin", "user", "activation-password", "a@example.com"],
    )
    .code(2);
    bramble(
        tmp.path(),
        ["device", "--home", "phone", "connect", "--for", "soon"],
    )
    .code(2);
    bramble(
        tmp.path(),
        ["relay", "--server-listen", "nowhere", "srp", "list"],
    )
    .code(2);
}

/// `bramble … --json | head`: a reader that goes away ends the program quietly (exit 0, no
/// panic), as ripgrep does.
#[test]
fn a_closed_pipe_is_not_a_panic() {
    let tmp = crate::util::tempdir();
    let home = tmp.path().join("phone");
    let mut child = crate::util::command(tmp.path())
        .args([
            "device",
            "--home",
            crate::util::s(&home),
            "status",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("bramble starts");
    drop(child.stdout.take()); // the reader is gone before anything is written
    let out = child.wait_with_output().expect("bramble ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
}

/// `bramble … | head` closes standard output before everything is printed: the command ends
/// quietly (exit 0), never with a panic's message.
#[test]
fn a_closed_standard_output_ends_quietly() {
    let tmp = tempdir();
    let mut cmd = crate::util::command(tmp.path());
    cmd.args(["device", "--home", "phone", "status"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("starting bramble");
    // The reader goes away before the first line.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("waiting for bramble");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}
