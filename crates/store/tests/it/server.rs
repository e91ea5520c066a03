//! The server's identity and statistics.

use bramble_store::ServerIdentity;

use crate::fixture;

#[tokio::test]
async fn identity_round_trips() -> anyhow::Result<()> {
    let f = fixture().await?;
    let s = &f.store;
    assert!(s.server_identity().await?.is_none());

    let first = ServerIdentity {
        srp_id: u32::MAX,
        srp_key: "S3CRET-SRP-KEY".to_owned(),
        relay_addr: "relay.example.com:3101".to_owned(),
        relay_fingerprint: Some("sha256:ab:cd".to_owned()),
    };
    s.set_server_identity(&first).await?;
    assert_eq!(s.server_identity().await?, Some(first.clone()));
    assert!(
        !format!("{first:?}").contains("S3CRET"),
        "Debug prints the SRP key"
    );

    let second = ServerIdentity {
        srp_id: 1234,
        srp_key: "other".to_owned(),
        relay_addr: "127.0.0.1:3101".to_owned(),
        relay_fingerprint: None,
    };
    s.set_server_identity(&second).await?;
    assert_eq!(s.server_identity().await?, Some(second));
    Ok(())
}

#[tokio::test]
async fn stats_add_up() -> anyhow::Result<()> {
    let f = fixture().await?;
    let s = &f.store;
    assert!(s.stats("global").await?.is_empty());
    s.bump_stat("global", "messages_forwarded", 1).await?;
    s.bump_stat("global", "messages_forwarded", 41).await?;
    s.bump_stat("global", "Messages_Filtered", 2).await?;
    s.bump_stat("global", "devices", 5).await?;
    s.bump_stat("global", "devices", -2).await?;
    s.bump_stat("Olga@Example.com", "messages_sent", 1).await?;
    s.bump_stat("olga@example.com", "messages_sent", 1).await?;

    assert_eq!(
        s.stats("global").await?,
        [
            ("Messages_Filtered".to_owned(), 2),
            ("devices".to_owned(), 3),
            ("messages_forwarded".to_owned(), 42),
        ]
    );
    assert_eq!(
        s.stats("OLGA@example.com").await?,
        [("messages_sent".to_owned(), 2)]
    );

    assert_eq!(s.clear_stats("olga@example.com").await?, 1);
    assert!(s.stats("olga@example.com").await?.is_empty());
    assert_eq!(s.stats("global").await?.len(), 3);
    Ok(())
}
