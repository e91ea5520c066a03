//! Free loopback ports for Bramble's own listeners in tests, and what the test servers share:
//! port locks, the watchdog that stops a server when the test process is gone, log tails.

use std::net::{Ipv4Addr, TcpListener};

/// A TCP port on 127.0.0.1 that was free a moment ago: the kernel picks it (binding port 0)
/// and the listener is closed again. Another process may take it before the caller binds it;
/// where the code under test can take a listener, prefer [`free_listener`], which has no such
/// window.
///
/// # Panics
/// If 127.0.0.1 cannot be bound at all.
pub fn free_port() -> u16 {
    match free_listener().local_addr() {
        Ok(addr) => addr.port(),
        Err(e) => panic!("reading the address of a listener on 127.0.0.1: {e}"),
    }
}

/// A TCP listener on 127.0.0.1 on a port the kernel picked.
///
/// # Panics
/// If 127.0.0.1 cannot be bound at all.
pub fn free_listener() -> TcpListener {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| panic!("binding a TCP listener on 127.0.0.1:0: {e}"))
}

/// An exclusive lock on `$TMPDIR/bramble-testkit/NAME.lock`, or `None` if another test server
/// (in this process or another) holds it: how the test servers that pick their own port
/// ranges keep out of each other's way. The kernel drops it when the process dies.
pub(crate) fn lock_file(name: &str) -> anyhow::Result<Option<std::fs::File>> {
    use anyhow::Context;
    let dir = std::env::temp_dir().join("bramble-testkit");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{name}.lock"));
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// Whether `BRAMBLE_TEST_KEEP_DIRS` asks to keep test servers' directories for a look after.
pub(crate) fn keep_dirs() -> bool {
    std::env::var_os("BRAMBLE_TEST_KEEP_DIRS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// `sh` that waits until this test process is gone (a zombie counts as gone), then runs
/// `stop` (shell text; `$1` is `dir`) and removes `dir` unless [`keep_dirs`] asks to keep it.
/// In its own process group, so a Ctrl-C to the test run does not take it down with the
/// tests: what outlives a killed test run is stopped all the same.
pub(crate) fn watchdog(
    name: &str,
    stop: &str,
    dir: &std::path::Path,
) -> anyhow::Result<std::process::Child> {
    use anyhow::Context;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let script = format!(
        r#"while s=$(ps -o stat= -p {pid}) && [ "${{s#Z}}" = "$s" ]; do sleep 0.5; done
{stop}
[ "$2" = keep ] || rm -rf "$1""#,
        pid = std::process::id()
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(format!("bramble-{name}-watchdog"))
        .arg(dir)
        .arg(if keep_dirs() { "keep" } else { "remove" })
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting the {name} watchdog (sh)"))
}

/// The last 30 lines of the log file `dir/name`, headed by its name, for a failure message.
pub(crate) fn log_tail(dir: &std::path::Path, name: &str) -> String {
    let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = format!("--- {name} (last lines)\n");
    for line in &lines[lines.len().saturating_sub(30)..] {
        out.push_str(line);
        out.push('\n');
    }
    out
}
