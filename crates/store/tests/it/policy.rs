//! The policy service's tables: groups, versioned IT policies and their assignments, what
//! each device was sent, IT admin commands with their receipts, packages, software
//! configurations and deployment jobs.

use bramble_store::{Store, StoreError};

use crate::{fixture, new_device};

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";

async fn users(store: &Store) -> anyhow::Result<()> {
    store.add_user(ALICE, None).await?;
    store.add_user(BOB, None).await?;
    Ok(())
}

#[tokio::test]
async fn policies_are_versioned_and_resolved_candidates_come_by_group_name() -> anyhow::Result<()> {
    let f = fixture().await?;
    let s = &f.store;
    users(s).await?;
    s.create_policy("Strict", Some("for sales"), r#"{"a":1}"#, Some("admin"))
        .await?;
    assert!(matches!(
        s.create_policy("STRICT", None, "{}", None).await,
        Err(StoreError::PolicyExists { .. })
    ));
    assert!(matches!(
        s.create_policy("  ", None, "{}", None).await,
        Err(StoreError::InvalidName { .. })
    ));
    // two updates at once get two versions
    let (a, b) = tokio::join!(
        s.update_policy("strict", r#"{"a":2}"#, None, Some("one")),
        s.update_policy("Strict", r#"{"a":3}"#, None, Some("two"))
    );
    let mut got = vec![a?.version, b?.version];
    got.sort_unstable();
    assert_eq!(got, vec![2, 3]);
    assert_eq!(
        s.policy("strict").await?.map(|p| p.current_version),
        Some(3)
    );
    assert_eq!(s.policy_versions("Strict").await?.len(), 3);
    assert_eq!(
        s.policy_version("Strict", Some(1))
            .await?
            .map(|v| v.rules_json),
        Some(r#"{"a":1}"#.to_owned())
    );
    assert!(s.policy_version("Strict", Some(9)).await?.is_none());
    s.create_policy("Loose", None, "{}", None).await?;

    s.add_group("Sales", None).await?;
    s.add_group("Admins", None).await?;
    assert!(matches!(
        s.add_group("sales", None).await,
        Err(StoreError::GroupExists { .. })
    ));
    assert!(s.add_group_member("sales", ALICE).await?);
    assert!(!s.add_group_member("Sales", ALICE).await?);
    s.add_group_member("Admins", ALICE).await?;
    assert!(matches!(
        s.add_group_member("Nobody", ALICE).await,
        Err(StoreError::NoSuchGroup { .. })
    ));
    s.assign_policy_to_group("Sales", Some("Strict")).await?;
    s.assign_policy_to_group("Admins", Some("Loose")).await?;
    let c = s.policy_candidates(ALICE).await?;
    assert_eq!(c.user, None);
    assert_eq!(
        c.groups,
        vec![
            ("Admins".to_owned(), "Loose".to_owned()),
            ("Sales".to_owned(), "Strict".to_owned())
        ]
    );
    s.assign_policy_to_user(ALICE, Some("strict")).await?;
    assert_eq!(
        s.policy_candidates(ALICE).await?.user.as_deref(),
        Some("Strict")
    );
    assert_eq!(
        s.policy_assignees("Strict").await?,
        (vec![ALICE.to_owned()], vec!["Sales".to_owned()])
    );
    s.assign_policy_to_user(ALICE, None).await?;
    assert_eq!(s.policy_candidates(ALICE).await?.user, None);
    assert_eq!(s.groups_of_user(ALICE).await?, vec!["Admins", "Sales"]);
    assert!(s.policy_candidates(BOB).await?.groups.is_empty());

    // deleting the user takes their memberships
    s.delete_user(ALICE).await?;
    assert!(
        s.group("Sales")
            .await?
            .map(|g| g.members)
            .unwrap_or_default()
            .is_empty()
    );
    // deleting a policy takes its assignments
    assert!(s.delete_policy("Loose").await?);
    assert_eq!(s.policy_assignees("Loose").await?, (vec![], vec![]));
    Ok(())
}

#[tokio::test]
async fn a_device_answer_counts_only_for_the_policy_it_was_last_sent() -> anyhow::Result<()> {
    let f = fixture().await?;
    let s = &f.store;
    users(s).await?;
    s.put_device(&new_device(ALICE, 0x2100_0001)).await?;
    assert!(matches!(
        s.record_policy_sent(0x0bad, "Default", 1, b"h1").await,
        Err(StoreError::NoSuchDevice { .. })
    ));
    s.record_policy_sent(0x2100_0001, "Default", 1, b"h1")
        .await?;
    s.record_policy_sent(0x2100_0001, "Default", 1, b"h1")
        .await?;
    let st = s.device_policy(0x2100_0001).await?.expect("state");
    assert_eq!(
        (st.send_count, st.applied, st.email.as_str()),
        (2, false, ALICE)
    );
    assert!(
        !s.record_policy_applied(0x2100_0001, b"old", true, &[])
            .await?
    );
    let problems = vec!["no password".to_owned()];
    assert!(
        s.record_policy_applied(0x2100_0001, b"h1", true, &problems)
            .await?
    );
    let st = s.device_policy(0x2100_0001).await?.expect("state");
    assert!(st.applied && st.applied_at_ms.is_some());
    assert_eq!(st.problems, problems);
    // a new policy starts afresh
    s.record_policy_sent(0x2100_0001, "Strict", 2, b"h2")
        .await?;
    let st = s.device_policy(0x2100_0001).await?.expect("state");
    assert_eq!((st.send_count, st.applied, st.version), (1, false, 2));
    assert!(st.problems.is_empty());
    assert_eq!(s.device_policies_sent_before(i64::MAX, 10).await?.len(), 1);
    assert!(s.device_policies_sent_before(0, 10).await?.is_empty());
    // the state goes with the device
    s.delete_device(0x2100_0001).await?;
    assert!(s.device_policy(0x2100_0001).await?.is_none());
    Ok(())
}

#[tokio::test]
async fn a_final_command_state_is_final() -> anyhow::Result<()> {
    let f = fixture().await?;
    let s = &f.store;
    users(s).await?;
    let c = s
        .add_command(ALICE, Some(7), "lock", "{}", Some("admin"))
        .await?;
    assert_eq!((c.state.as_str(), c.history.len()), ("queued", 1));
    assert_eq!(s.commands_to_send(0, 10).await?.len(), 1);
    assert!(s.mark_command_sent(c.id).await?);
    assert!(s.mark_command_sent(c.id).await?);
    let c2 = s.command(c.id).await?.expect("command");
    assert_eq!(
        (c2.state.as_str(), c2.attempts, c2.history.len()),
        ("sent", 2, 2)
    );
    assert!(s.commands_to_send(0, 10).await?.is_empty(), "sent just now");
    assert_eq!(s.commands_to_send(i64::MAX, 10).await?.len(), 1);
    assert!(
        s.set_command_state(c.id, "pending", Some("at noon"))
            .await?
    );
    assert!(s.mark_command_sent(c.id).await?);
    assert_eq!(
        s.command(c.id).await?.map(|c| c.state),
        Some("pending".into())
    );
    assert!(s.set_command_state(c.id, "done", None).await?);
    assert!(!s.set_command_state(c.id, "failed", None).await?);
    assert!(!s.mark_command_sent(c.id).await?);
    let done = s.command(c.id).await?.expect("command");
    assert_eq!(done.state, "done");
    let states: Vec<&str> = done.history.iter().map(|e| e.state.as_str()).collect();
    assert_eq!(states, vec!["queued", "sent", "pending", "done"]);
    assert!(matches!(
        s.set_command_state(c.id, "exploded", None).await,
        Err(StoreError::InvalidValue { .. })
    ));
    assert!(matches!(
        s.set_command_state(999, "done", None).await,
        Err(StoreError::NoSuchCommand { .. })
    ));
    s.add_command(BOB, None, "wipe", "{}", None).await?;
    assert_eq!(s.commands(Some(ALICE), false, 10).await?.len(), 1);
    assert!(s.commands(Some(ALICE), true, 10).await?.is_empty());
    assert_eq!(s.commands(None, true, 10).await?.len(), 1);
    s.delete_user(BOB).await?;
    assert_eq!(s.commands(None, false, 10).await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn packages_are_read_in_pieces_and_jobs_supersede_each_other() -> anyhow::Result<()> {
    let f = fixture().await?;
    let s = &f.store;
    users(s).await?;
    let content: Vec<u8> = (0..1_048_576u32).map(|i| (i % 251) as u8).collect();
    s.add_package("Notes", "1.0", &content, &[1; 32], None)
        .await?;
    assert!(matches!(
        s.add_package("notes", "1.0", b"x", &[2; 32], None).await,
        Err(StoreError::PackageExists { .. })
    ));
    let mut back = Vec::new();
    let mut offset = 0u64;
    loop {
        let piece = s
            .package_content("NOTES", "1.0", offset, 256 * 1024)
            .await?
            .expect("package");
        if piece.is_empty() {
            break;
        }
        offset += piece.len() as u64;
        back.extend(piece);
    }
    assert_eq!(back, content);
    assert_eq!(
        s.package_content("Notes", "1.0", 5_000_000, 10).await?,
        Some(vec![])
    );
    assert_eq!(s.package_content("Notes", "2.0", 0, 10).await?, None);

    s.create_software_config("Sales apps", false).await?;
    assert!(matches!(
        s.set_software_config_app("Sales apps", "Notes", Some("9"), "required")
            .await,
        Err(StoreError::NoSuchPackage { .. })
    ));
    assert!(matches!(
        s.set_software_config_app("Sales apps", "Notes", Some("1.0"), "mandatory")
            .await,
        Err(StoreError::InvalidValue { .. })
    ));
    s.set_software_config_app("sales apps", "notes", Some("1.0"), "required")
        .await?;
    s.set_software_config_app("Sales apps", "Game", None, "not-permitted")
        .await?;
    let cfg = s.software_config("SALES APPS").await?.expect("config");
    assert_eq!(cfg.apps.len(), 2);
    assert_eq!(cfg.apps[1].name, "Notes", "the repository's spelling");
    s.add_group("Sales", None).await?;
    s.add_group_member("Sales", ALICE).await?;
    s.assign_software_to_group("Sales", Some("Sales apps"))
        .await?;
    let c = s.software_candidates(ALICE).await?;
    assert_eq!(
        c.groups,
        vec![("Sales".to_owned(), "Sales apps".to_owned())]
    );

    s.put_device(&new_device(ALICE, 0x2100_0002)).await?;
    let j1 = s
        .add_software_job(0x2100_0002, ALICE, "Sales apps", "{}")
        .await?;
    assert!(s.mark_software_job_sent(j1.id).await?);
    let j2 = s
        .add_software_job(0x2100_0002, ALICE, "Sales apps", "{\"v\":2}")
        .await?;
    assert_eq!(
        s.software_job(j1.id).await?.map(|j| j.state),
        Some("superseded".into())
    );
    assert!(!s.finish_software_job(j1.id, "done", None, None).await?);
    assert_eq!(s.software_jobs_to_send(0, 10).await?.len(), 1);
    assert!(
        s.finish_software_job(j2.id, "done", Some("1 installed"), Some("[]"))
            .await?
    );
    assert!(!s.finish_software_job(j2.id, "failed", None, None).await?);
    assert_eq!(
        s.latest_software_job(0x2100_0002).await?.map(|j| j.id),
        Some(j2.id)
    );
    assert_eq!(s.software_jobs(Some(ALICE), 10).await?.len(), 2);
    assert!(s.delete_package("Notes", "1.0").await?);
    Ok(())
}
