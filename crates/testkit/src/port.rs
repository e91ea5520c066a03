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
