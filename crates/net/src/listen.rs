//! Listeners with an accept backlog deep enough for thousands of devices connecting at once
//! (`TcpListener::bind` uses 128, which overflowed at 200 concurrent connects here).

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// The accept backlog of every Bramble listener.
pub const BACKLOG: u32 = 4096;

/// Binds a TCP listener on `addr` with [`BACKLOG`] and `SO_REUSEADDR`.
///
/// # Errors
/// When the address cannot be bound (in use, no permission).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}
