use std::net::{Ipv4Addr, TcpListener};

use bramble_testkit::{free_listener, free_port};

#[test]
fn free_port_can_be_bound() {
    let port = free_port();
    assert_ne!(port, 0);
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("binding the free port");
}

#[test]
fn free_listener_is_on_loopback() {
    let addr = free_listener().local_addr().expect("local_addr");
    assert!(addr.ip().is_loopback());
    assert_ne!(addr.port(), 0);
}
