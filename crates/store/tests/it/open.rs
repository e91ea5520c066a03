//! Opening: URL forms, migrations, clear errors.

use std::time::Duration;

use bramble_store::{BackendKind, Store, StoreError, StoreOptions};
use bramble_testkit::DbKind;

use crate::fixture;

#[tokio::test]
async fn migrations_run_again_on_reopen() -> anyhow::Result<()> {
    let f = fixture().await?;
    let expected = match f.db.kind() {
        DbKind::Sqlite => BackendKind::Sqlite,
        DbKind::Postgres => BackendKind::Postgres,
    };
    assert_eq!(f.store.backend(), expected);
    f.store.add_user("alice@example.com", Some("Alice")).await?;
    f.store.close().await;
    assert!(
        f.store.user("alice@example.com").await.is_err(),
        "closed store still answers"
    );

    for _ in 0..2 {
        let again = Store::open(f.db.url()).await?;
        let alice = again
            .user("alice@example.com")
            .await?
            .expect("alice survives a reopen");
        assert_eq!(alice.display_name.as_deref(), Some("Alice"));
        again.close().await;
    }
    Ok(())
}

#[tokio::test]
async fn backend_kind_displays_its_name() {
    assert_eq!(BackendKind::Sqlite.to_string(), "sqlite");
    assert_eq!(BackendKind::Postgres.to_string(), "postgres");
}

#[tokio::test]
async fn unknown_scheme_names_the_accepted_forms() {
    let err = Store::open("mysql://bramble:hunter2@db.example.com/bramble")
        .await
        .expect_err("mysql is not supported");
    assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err:?}");
    let msg = err.to_string();
    for form in [
        "postgres://",
        "postgresql://",
        "sqlite://",
        "sqlite:PATH",
        "file path",
        "mysql",
    ] {
        assert!(msg.contains(form), "{msg:?} does not mention {form}");
    }
    assert!(!msg.contains("hunter2"), "{msg:?} shows the password");

    let err = Store::open("").await.expect_err("empty URL");
    assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err:?}");
}

#[tokio::test]
async fn unreachable_postgres_says_check_the_server() {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let opts = StoreOptions {
        connect_timeout: Duration::from_millis(500),
        ..StoreOptions::default()
    };
    let err = Store::open_with("postgres://bramble:hunter2@127.0.0.1:1/bramble", &opts)
        .await
        .expect_err("nothing listens on port 1");
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("could not be opened"), "{msg}");
    assert!(
        msg.contains("check the URL and that the server is running"),
        "{msg}"
    );
    assert!(
        msg.contains("postgres://bramble:***@127.0.0.1:1/bramble"),
        "{msg}"
    );
    assert!(!msg.contains("hunter2"), "{msg:?} shows the password");
}

#[tokio::test]
async fn sqlite_plain_path_is_created_with_its_directory_and_wal() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("var").join("lib").join("bramble.db");
    let store = Store::open(path.to_str().expect("temp path is UTF-8")).await?;
    assert_eq!(store.backend(), BackendKind::Sqlite);
    store.add_user("bob@example.com", None).await?;
    assert!(path.exists(), "database file was not created");
    let wal = path.with_file_name("bramble.db-wal");
    assert!(
        wal.exists(),
        "no WAL file beside the database: journal mode is not WAL"
    );
    store.close().await;

    for url in [
        format!("sqlite:{}", path.display()),
        format!("sqlite://{}", path.display()),
    ] {
        let again = Store::open(&url).await?;
        assert!(again.user("bob@example.com").await?.is_some(), "{url}");
        again.close().await;
    }
    Ok(())
}

#[tokio::test]
async fn sqlite_in_memory_keeps_one_database() -> anyhow::Result<()> {
    let store = Store::open("sqlite::memory:").await?;
    store.add_user("carol@example.com", None).await?;
    // Several calls, possibly on several connections if the pool allowed it.
    for _ in 0..5 {
        assert_eq!(store.list_users().await?.len(), 1);
    }
    store.close().await;
    Ok(())
}
