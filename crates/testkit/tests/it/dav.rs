use std::io::{Read, Write};
use std::net::TcpStream;

use bramble_testkit::DavServer;

/// The status code of a PROPFIND on `path` with Basic auth (base64 of `user:password` given).
fn propfind(server: &DavServer, path: &str, basic: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port())).expect("connecting");
    let body =
        r#"<?xml version="1.0"?><propfind xmlns="DAV:"><prop><resourcetype/></prop></propfind>"#;
    write!(
        stream,
        "PROPFIND {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nDepth: 0\r\nAuthorization: Basic {basic}\r\n\
         Content-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("writing");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("reading");
    answer.get(9..12).unwrap_or_default().to_owned()
}

#[test]
fn radicale_logs_in_users_and_the_service_account() {
    let server = DavServer::start(&[("alice@example.test", "alicepw")]).expect("starting Radicale");
    assert!(server.url().ends_with('/'));
    assert_eq!(server.service_account().0, "bramble-service");
    // base64("alice@example.test:alicepw"), base64("alice@example.test:wrong"),
    // base64("bramble-service:bramble-service-pw"), base64("bob@example.test:bobpw")
    let alice = "YWxpY2VAZXhhbXBsZS50ZXN0OmFsaWNlcHc=";
    let wrong = "YWxpY2VAZXhhbXBsZS50ZXN0Ondyb25n";
    let service = "YnJhbWJsZS1zZXJ2aWNlOmJyYW1ibGUtc2VydmljZS1wdw==";
    let bob = "Ym9iQGV4YW1wbGUudGVzdDpib2Jwdw==";
    assert_eq!(
        propfind(&server, "/alice%40example.test/", alice),
        "207",
        "{}",
        server.log_tail()
    );
    assert_eq!(propfind(&server, "/alice%40example.test/", wrong), "401");
    assert_eq!(
        propfind(&server, "/alice%40example.test/", service),
        "207",
        "{}",
        server.log_tail()
    );
    assert_eq!(propfind(&server, "/alice%40example.test/", bob), "401");
    server
        .add_user("bob@example.test", "bobpw")
        .expect("adding bob");
    assert_eq!(
        propfind(&server, "/bob%40example.test/", bob),
        "207",
        "{}",
        server.log_tail()
    );
    assert_eq!(
        propfind(&server, "/alice%40example.test/", bob),
        "403",
        "{}",
        server.log_tail()
    );
}
