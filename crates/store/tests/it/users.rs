//! Users, their status and its timeline.

use bramble_store::{StoreError, UserStatus, now_ms};

use crate::{fixture, new_device};

#[tokio::test]
async fn add_lookup_is_case_insensitive() -> anyhow::Result<()> {
    let f = fixture().await?;
    let before = now_ms();
    let added = f
        .store
        .add_user(" Alice@Example.COM ", Some("Alice Liddell"))
        .await?;
    assert_eq!(added.email, "alice@example.com");
    assert_eq!(added.status, UserStatus::Initializing);
    assert!(added.created_at_ms >= before && added.status_at_ms == added.created_at_ms);
    assert!(!added.has_activation_password);

    let found = f
        .store
        .user("ALICE@example.com")
        .await?
        .expect("found in another case");
    assert_eq!(found, added);
    assert!(f.store.user("nobody@example.com").await?.is_none());
    Ok(())
}

#[tokio::test]
async fn duplicate_and_invalid_addresses_are_refused() -> anyhow::Result<()> {
    let f = fixture().await?;
    f.store.add_user("bob@example.com", None).await?;
    let err = f
        .store
        .add_user("BOB@example.com", Some("Bob again"))
        .await
        .expect_err("duplicate in another case");
    assert!(
        matches!(&err, StoreError::UserExists { email } if email == "bob@example.com"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "a user with address bob@example.com already exists"
    );
    // The refused insert left nothing behind.
    assert_eq!(f.store.status_history("bob@example.com").await?.len(), 1);

    for bad in [
        "",
        "bob",
        "bob@",
        "@example.com",
        "a@b@example.com",
        "b ob@example.com",
    ] {
        let err = f.store.add_user(bad, None).await.expect_err(bad);
        assert!(
            matches!(err, StoreError::InvalidEmail { .. }),
            "{bad:?}: {err:?}"
        );
    }
    let long = format!("{}@example.com", "x".repeat(250));
    let err = f.store.add_user(&long, None).await.expect_err("too long");
    assert!(matches!(err, StoreError::InvalidEmail { .. }), "{err:?}");
    assert_eq!(f.store.list_users().await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn list_is_ordered_by_address_bytes() -> anyhow::Result<()> {
    let f = fixture().await?;
    // PostgreSQL's default collation would sort "a.b" after "ab" and "Z" among "z": the
    // store asks for byte order on both backends.
    for email in [
        "zed@example.com",
        "ab@example.com",
        "a.b@example.com",
        "a-c@example.com",
    ] {
        f.store.add_user(email, None).await?;
    }
    let emails: Vec<String> = f
        .store
        .list_users()
        .await?
        .into_iter()
        .map(|u| u.email)
        .collect();
    assert_eq!(
        emails,
        [
            "a-c@example.com",
            "a.b@example.com",
            "ab@example.com",
            "zed@example.com"
        ]
    );
    Ok(())
}

#[tokio::test]
async fn delete_removes_everything_of_the_user() -> anyhow::Result<()> {
    let f = fixture().await?;
    let s = &f.store;
    s.add_user("carol@example.com", None).await?;
    s.add_user("dave@example.com", None).await?;
    for email in ["carol@example.com", "dave@example.com"] {
        s.set_user_status(email, UserStatus::Activating, None)
            .await?;
        s.set_activation(email, b"record", now_ms() + 60_000, 5)
            .await?;
        s.bump_stat(email, "messages_sent", 3).await?;
    }
    s.put_device(&new_device("carol@example.com", 0x2100_000A))
        .await?;
    s.put_device(&new_device("dave@example.com", 0x2100_000B))
        .await?;
    assert!(
        s.user("carol@example.com")
            .await?
            .expect("carol")
            .has_activation_password
    );

    assert!(s.delete_user("Carol@Example.com").await?);
    assert!(s.user("carol@example.com").await?.is_none());
    assert!(s.activation("carol@example.com").await?.is_none());
    assert!(s.device_by_pin(0x2100_000A).await?.is_none());
    assert!(s.stats("carol@example.com").await?.is_empty());
    assert!(matches!(
        s.status_history("carol@example.com").await,
        Err(StoreError::NoSuchUser { .. })
    ));
    assert!(
        !s.delete_user("carol@example.com").await?,
        "second delete finds nothing"
    );

    // Dave is untouched.
    assert!(s.activation("dave@example.com").await?.is_some());
    assert!(s.device_by_pin(0x2100_000B).await?.is_some());
    assert_eq!(
        s.stats("dave@example.com").await?,
        [("messages_sent".to_owned(), 3)]
    );
    assert_eq!(s.status_history("dave@example.com").await?.len(), 2);

    // The address can be used again, from a clean slate.
    let again = s.add_user("carol@example.com", None).await?;
    assert!(!again.has_activation_password);
    assert_eq!(s.status_history("carol@example.com").await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_new_address_keeps_everything_of_the_user() -> anyhow::Result<()> {
    let f = fixture().await?;
    let s = &f.store;
    s.add_user_from_directory("erin@example.com", Some("Erin"), "uuid-erin")
        .await?;
    s.add_user("frank@example.com", None).await?;
    s.set_user_status("erin@example.com", UserStatus::Activating, None)
        .await?;
    s.bump_stat("erin@example.com", "messages_sent", 4).await?;
    s.put_device(&new_device("erin@example.com", 0x2100_000C))
        .await?;

    let moved = s
        .change_user_email("Erin@Example.com", " Erin.Smith@Example.com ")
        .await?;
    assert_eq!(moved.email, "erin.smith@example.com");
    assert_eq!(moved.display_name.as_deref(), Some("Erin"));
    assert_eq!(moved.directory_id.as_deref(), Some("uuid-erin"));
    assert!(s.user("erin@example.com").await?.is_none());
    assert_eq!(
        s.device_by_pin(0x2100_000C).await?.map(|d| d.email),
        Some("erin.smith@example.com".to_owned())
    );
    assert_eq!(
        s.stats("erin.smith@example.com").await?,
        [("messages_sent".to_owned(), 4)]
    );
    assert!(s.stats("erin@example.com").await?.is_empty());
    assert_eq!(s.status_history("erin.smith@example.com").await?.len(), 2);

    // Another user's address, no such user, a malformed address: refused, nothing changed.
    assert!(matches!(
        s.change_user_email("erin.smith@example.com", "FRANK@example.com").await,
        Err(StoreError::UserExists { email }) if email == "frank@example.com"
    ));
    assert!(matches!(
        s.change_user_email("nobody@example.com", "new@example.com")
            .await,
        Err(StoreError::NoSuchUser { .. })
    ));
    assert!(matches!(
        s.change_user_email("erin.smith@example.com", "not an address")
            .await,
        Err(StoreError::InvalidEmail { .. })
    ));
    assert!(s.user("erin.smith@example.com").await?.is_some());
    // The same address again changes nothing.
    assert_eq!(
        s.change_user_email("erin.smith@example.com", "erin.smith@example.com")
            .await?
            .email,
        "erin.smith@example.com"
    );
    Ok(())
}

#[tokio::test]
async fn status_changes_are_kept_in_order() -> anyhow::Result<()> {
    let f = fixture().await?;
    let s = &f.store;
    s.add_user("erin@example.com", None).await?;
    let steps = [
        (UserStatus::Activating, None),
        (UserStatus::VerifyingEncryption, None),
        (UserStatus::Failed, Some("wrong activation password")),
        (UserStatus::Activating, None),
        (UserStatus::VerifyingEncryption, None),
        (UserStatus::WaitingForServices, None),
        (UserStatus::ServicesReceived, None),
        (
            UserStatus::Completed,
            Some("activated by the administrator's request"),
        ),
    ];
    for (status, reason) in steps {
        s.set_user_status("ERIN@example.com", status, reason)
            .await?;
    }
    let user = s.user("erin@example.com").await?.expect("erin");
    assert_eq!(user.status, UserStatus::Completed);
    assert_eq!(
        user.status_reason.as_deref(),
        Some("activated by the administrator's request")
    );
    assert!(user.status_at_ms >= user.created_at_ms);

    let history = s.status_history("erin@example.com").await?;
    assert_eq!(history.len(), steps.len() + 1);
    assert_eq!(history[0].status, UserStatus::Initializing);
    assert_eq!(history[0].at_ms, user.created_at_ms);
    for (event, (status, reason)) in history[1..].iter().zip(steps) {
        assert_eq!(event.status, status);
        assert_eq!(event.reason.as_deref(), reason);
    }
    assert!(history.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    assert_eq!(history.last().map(|e| e.at_ms), Some(user.status_at_ms));

    let err = s
        .set_user_status("nobody@example.com", UserStatus::Activating, None)
        .await
        .expect_err("no such user");
    assert_eq!(err.to_string(), "no user with address nobody@example.com");
    Ok(())
}

#[test]
fn status_texts_are_bes_texts() -> anyhow::Result<()> {
    let texts = [
        "Initializing",
        "Activating",
        "Verifying Encryption",
        "Waiting for Services",
        "Services Received",
        "Completed",
        "Failed",
    ];
    for (status, text) in UserStatus::ALL.into_iter().zip(texts) {
        assert_eq!(status.to_string(), text);
        assert_eq!(text.parse::<UserStatus>()?, status);
        assert_eq!(text.to_uppercase().parse::<UserStatus>()?, status);
        assert_eq!(status.as_db_str().parse::<UserStatus>()?, status);
    }
    assert_eq!(
        "waiting_for_services".parse::<UserStatus>()?,
        UserStatus::WaitingForServices
    );
    assert!("Activated".parse::<UserStatus>().is_err());
    Ok(())
}

#[tokio::test]
async fn directory_ids_link_one_user_each() -> anyhow::Result<()> {
    let f = fixture().await?;
    let alice = f
        .store
        .add_user_from_directory("alice@example.test", Some("Alice Example"), "uuid-a")
        .await?;
    assert_eq!(alice.directory_id.as_deref(), Some("uuid-a"));
    let found = f
        .store
        .user_by_directory_id("uuid-a")
        .await?
        .expect("linked");
    assert_eq!(found, alice);
    assert!(f.store.user_by_directory_id("uuid-b").await?.is_none());

    // the same entry cannot become a second user, nor be linked to another one
    let err = f
        .store
        .add_user_from_directory("alice2@example.test", None, "uuid-a")
        .await
        .expect_err("entry in use");
    assert!(
        matches!(&err, StoreError::DirectoryIdInUse { email, .. } if email == "alice@example.test"),
        "{err:?}"
    );
    assert!(f.store.user("alice2@example.test").await?.is_none());
    f.store.add_user("bob@example.test", None).await?;
    let err = f
        .store
        .set_directory_id("bob@example.test", Some("uuid-a"))
        .await
        .expect_err("entry in use");
    assert!(
        matches!(err, StoreError::DirectoryIdInUse { .. }),
        "{err:?}"
    );

    // a user added by hand is linked later; linking again to the same entry is fine
    f.store
        .set_directory_id("BOB@example.test", Some("uuid-b"))
        .await?;
    f.store
        .set_directory_id("bob@example.test", Some("uuid-b"))
        .await?;
    let bob = f.store.user("bob@example.test").await?.expect("bob");
    assert_eq!(bob.directory_id.as_deref(), Some("uuid-b"));
    f.store.set_directory_id("bob@example.test", None).await?;
    assert!(f.store.user_by_directory_id("uuid-b").await?.is_none());
    let err = f
        .store
        .set_directory_id("nobody@example.test", Some("uuid-c"))
        .await
        .expect_err("no user");
    assert!(matches!(err, StoreError::NoSuchUser { .. }), "{err:?}");

    // names follow the directory
    f.store
        .set_display_name("alice@example.test", Some("Alice Liddell"))
        .await?;
    let alice = f.store.user("alice@example.test").await?.expect("alice");
    assert_eq!(alice.display_name.as_deref(), Some("Alice Liddell"));
    let err = f
        .store
        .set_display_name("nobody@example.test", None)
        .await
        .expect_err("no user");
    assert!(matches!(err, StoreError::NoSuchUser { .. }), "{err:?}");
    Ok(())
}
