//! TLS between a listener made by `bind` and `connect`, with pinning and channel binding.

use bramble_net::tls::{self, CertPin, TlsIdentity};

#[tokio::test]
async fn pinned_connection_and_channel_binding_agree() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let id = TlsIdentity::load_or_create(
        &dir.path().join("c.pem"),
        &dir.path().join("k.pem"),
        &["localhost".into(), "127.0.0.1".into()],
    )?;
    assert!(id.created);
    let again =
        TlsIdentity::load_or_create(&dir.path().join("c.pem"), &dir.path().join("k.pem"), &[])?;
    assert!(!again.created);
    assert_eq!(again.fingerprint, id.fingerprint);

    let listener = bramble_net::bind("127.0.0.1:0".parse()?)?;
    let addr = listener.local_addr()?.to_string();
    let acceptor = tokio_rustls::TlsAcceptor::from(id.server_config()?);
    let server = tokio::spawn(async move {
        let mut bindings = Vec::new();
        for _ in 0..2 {
            let (tcp, _) = listener.accept().await.expect("accepts");
            if let Ok(s) = acceptor.accept(tcp).await {
                bindings.push(tls::channel_binding_server(&s).expect("binding"));
            }
        }
        bindings
    });

    // First use: accepted, and the fingerprint is remembered.
    let tofu = CertPin::trust_on_first_use();
    let c = tls::connect(&addr, &tofu).await?;
    assert_eq!(tofu.seen(), Some(id.fingerprint));
    let client_binding = tls::channel_binding_client(&c)?;

    // A wrong pin: refused with both fingerprints named.
    let wrong = CertPin::expect(tls::Fingerprint([0xAB; 32]));
    let err = tls::connect(&addr, &wrong).await.expect_err("refused");
    assert!(
        matches!(err, tls::TlsError::FingerprintMismatch { .. }),
        "{err}"
    );

    let server_bindings = server.await?;
    assert_eq!(server_bindings.first(), Some(&client_binding));
    Ok(())
}
