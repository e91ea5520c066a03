//! Free loopback ports for Bramble's own listeners in tests.

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
