//! Push-mail filters: ordering within a scope, names, updates, moves and deletes.

use bramble_store::{
    Filter, FilterAction, FilterConditions, FilterScope, FilterUpdate, MAX_FILTER_PATTERN,
    NewFilter, Store, StoreError, now_ms,
};

use crate::fixture;

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";

fn alice() -> FilterScope {
    FilterScope::User(ALICE.to_owned())
}

fn new(scope: &FilterScope, name: &str, action: FilterAction) -> NewFilter {
    NewFilter {
        scope: scope.clone(),
        name: name.to_owned(),
        conditions: FilterConditions::default(),
        action,
        enabled: true,
        position: None,
    }
}

/// The names of a scope's filters, in order, after checking the positions are 1..=n.
async fn names(store: &Store, scope: &FilterScope) -> anyhow::Result<Vec<String>> {
    let list = store.list_filters(scope).await?;
    let positions: Vec<u32> = list.iter().map(|f| f.position).collect();
    let want: Vec<u32> = (1..).take(list.len()).collect();
    assert_eq!(
        positions, want,
        "positions of {scope} are not 1..=n: {list:#?}"
    );
    Ok(list.into_iter().map(|f| f.name).collect())
}

#[tokio::test]
async fn filters_are_kept_in_order_per_scope() -> anyhow::Result<()> {
    let f = fixture().await?;
    let s = &f.store;
    s.add_user(ALICE, None).await?;
    let before = now_ms();
    let first = s
        .add_filter(&NewFilter {
            conditions: FilterConditions {
                from: Some("*@boss.example.com".into()),
                to: Some("sales@*".into()),
                cc: Some("?am@example.com".into()),
                subject: Some("Urgent".into()),
                importance: Some("High".into()),
            },
            ..new(
                &FilterScope::Global,
                "  Boss  ",
                FilterAction::ForwardWithPriority,
            )
        })
        .await?;
    assert_eq!(first.scope, FilterScope::Global);
    assert_eq!(first.position, 1);
    assert_eq!(first.name, "Boss", "the name is trimmed");
    assert!(first.enabled);
    assert_eq!(first.action, FilterAction::ForwardWithPriority);
    assert_eq!(first.conditions.importance.as_deref(), Some("high"));
    assert_eq!(first.conditions.cc.as_deref(), Some("?am@example.com"));
    assert!(first.created_at_ms >= before && first.updated_at_ms == first.created_at_ms);
    assert_eq!(s.filter(first.id).await?, Some(first.clone()));

    s.add_filter(&new(
        &FilterScope::Global,
        "Newsletters",
        FilterAction::DoNotForward,
    ))
    .await?;
    // At a position: the rest move down.
    s.add_filter(&NewFilter {
        position: Some(1),
        ..new(&FilterScope::Global, "Top", FilterAction::Forward)
    })
    .await?;
    s.add_filter(&NewFilter {
        position: Some(3),
        ..new(&FilterScope::Global, "Third", FilterAction::Forward)
    })
    .await?;
    // Past the end: last.
    let last = s
        .add_filter(&NewFilter {
            position: Some(99),
            ..new(&FilterScope::Global, "Last", FilterAction::Forward)
        })
        .await?;
    assert_eq!(last.position, 5);
    assert_eq!(
        names(s, &FilterScope::Global).await?,
        ["Top", "Boss", "Third", "Newsletters", "Last"]
    );

    // A user's filters are a scope of their own, found by address in any case.
    let mine = s
        .add_filter(&NewFilter {
            enabled: false,
            ..new(
                &FilterScope::User("Alice@Example.COM".into()),
                "Mine",
                FilterAction::DoNotForward,
            )
        })
        .await?;
    assert_eq!(mine.scope, alice());
    assert_eq!(mine.position, 1);
    assert!(!mine.enabled);
    assert_eq!(
        s.list_filters(&FilterScope::User("ALICE@example.com".into()))
            .await?,
        [mine]
    );
    assert_eq!(s.list_filters(&FilterScope::Global).await?.len(), 5);

    let err = s
        .list_filters(&FilterScope::User("nobody@example.com".into()))
        .await
        .expect_err("no such user");
    assert!(matches!(err, StoreError::NoSuchUser { .. }), "{err:?}");
    let err = s
        .add_filter(&new(
            &FilterScope::User("nobody@example.com".into()),
            "X",
            FilterAction::Forward,
        ))
        .await
        .expect_err("no such user");
    assert!(matches!(err, StoreError::NoSuchUser { .. }), "{err:?}");
    assert!(s.filter(i64::MAX).await?.is_none());
    Ok(())
}

#[tokio::test]
async fn names_are_unique_per_scope_in_any_case() -> anyhow::Result<()> {
    let f = fixture().await?;
    let s = &f.store;
    s.add_user(ALICE, None).await?;
    s.add_user(BOB, None).await?;
    s.add_filter(&new(&FilterScope::Global, "VIP", FilterAction::Forward))
        .await?;
    let err = s
        .add_filter(&new(&FilterScope::Global, " vip ", FilterAction::Forward))
        .await
        .expect_err("a second global VIP");
    assert!(matches!(&err, StoreError::FilterExists { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the global filters already have one named \"vip\"; choose another name"
    );
    // The same name in another scope is fine, once per scope.
    let alices = s
        .add_filter(&new(&alice(), "VIP", FilterAction::Forward))
        .await?;
    s.add_filter(&new(
        &FilterScope::User(BOB.into()),
        "VIP",
        FilterAction::Forward,
    ))
    .await?;
    let err = s
        .add_filter(&new(&alice(), "Vip", FilterAction::Forward))
        .await
        .expect_err("a second VIP of alice");
    assert_eq!(
        err.to_string(),
        "the filters of alice@example.com already have one named \"Vip\"; choose another name"
    );

    // Renaming onto another filter's name is refused; changing the case of one's own is not.
    let other = s
        .add_filter(&new(&alice(), "Other", FilterAction::Forward))
        .await?;
    let err = s
        .update_filter(
            other.id,
            &FilterUpdate {
                name: Some("vip".into()),
                ..FilterUpdate::default()
            },
        )
        .await
        .expect_err("rename onto VIP");
    assert!(matches!(err, StoreError::FilterExists { .. }), "{err:?}");
    let renamed = s
        .update_filter(
            alices.id,
            &FilterUpdate {
                name: Some("vip".into()),
                ..FilterUpdate::default()
            },
        )
        .await?;
    assert_eq!(renamed.name, "vip");
    assert_eq!(names(s, &alice()).await?, ["vip", "Other"]);
    Ok(())
}

#[tokio::test]
async fn updates_change_only_what_is_given() -> anyhow::Result<()> {
    let f = fixture().await?;
    let s = &f.store;
    let added = s
        .add_filter(&NewFilter {
            conditions: FilterConditions {
                from: Some("boss".into()),
                subject: Some("urgent".into()),
                ..FilterConditions::default()
            },
            ..new(&FilterScope::Global, "Boss", FilterAction::Forward)
        })
        .await?;
    let same = s.update_filter(added.id, &FilterUpdate::default()).await?;
    assert_eq!(
        Filter {
            updated_at_ms: added.updated_at_ms,
            ..same.clone()
        },
        added
    );

    let changed = s
        .update_filter(
            added.id,
            &FilterUpdate {
                subject: Some(None),
                to: Some(Some("me@example.com".into())),
                importance: Some(Some("LOW".into())),
                action: Some(FilterAction::ForwardWithPriority),
                enabled: Some(false),
                ..FilterUpdate::default()
            },
        )
        .await?;
    assert_eq!(changed.name, "Boss");
    assert_eq!(
        changed.conditions,
        FilterConditions {
            from: Some("boss".into()),
            to: Some("me@example.com".into()),
            cc: None,
            subject: None,
            importance: Some("low".into()),
        }
    );
    assert_eq!(changed.action, FilterAction::ForwardWithPriority);
    assert!(!changed.enabled);
    assert!(changed.updated_at_ms >= added.updated_at_ms);
    assert_eq!(s.filter(added.id).await?, Some(changed.clone()));

    // An empty pattern removes the condition too.
    let cleared = s
        .update_filter(
            added.id,
            &FilterUpdate {
                from: Some(Some(String::new())),
                importance: Some(Some(String::new())),
                ..FilterUpdate::default()
            },
        )
        .await?;
    assert_eq!(
        cleared.conditions,
        FilterConditions {
            to: Some("me@example.com".into()),
            ..FilterConditions::default()
        }
    );

    // A refused update changes nothing.
    let err = s
        .update_filter(
            added.id,
            &FilterUpdate {
                enabled: Some(true),
                importance: Some(Some("urgent".into())),
                ..FilterUpdate::default()
            },
        )
        .await
        .expect_err("a bad importance");
    assert_eq!(
        err.to_string(),
        "the filter cannot be saved: importance \"urgent\" is not one of high, normal, low"
    );
    assert_eq!(s.filter(added.id).await?, Some(cleared));

    let err = s
        .update_filter(i64::MAX, &FilterUpdate::default())
        .await
        .expect_err("no such filter");
    assert!(
        matches!(err, StoreError::NoSuchFilter { id } if id == i64::MAX),
        "{err:?}"
    );
    Ok(())
}

#[tokio::test]
async fn moves_and_deletes_keep_positions_without_gaps() -> anyhow::Result<()> {
    let f = fixture().await?;
    let s = &f.store;
    s.add_user(ALICE, None).await?;
    let mut ids = Vec::new();
    for name in ["a", "b", "c", "d"] {
        ids.push(
            s.add_filter(&new(&FilterScope::Global, name, FilterAction::Forward))
                .await?
                .id,
        );
    }
    let theirs = s
        .add_filter(&new(&alice(), "x", FilterAction::Forward))
        .await?;

    let moved = s.move_filter(ids[3], 1).await?;
    assert_eq!(moved.position, 1);
    assert_eq!(names(s, &FilterScope::Global).await?, ["d", "a", "b", "c"]);
    s.move_filter(ids[0], 3).await?;
    assert_eq!(names(s, &FilterScope::Global).await?, ["d", "b", "a", "c"]);
    let moved = s.move_filter(ids[3], 40).await?;
    assert_eq!(moved.position, 4, "past the end is last");
    assert_eq!(names(s, &FilterScope::Global).await?, ["b", "a", "c", "d"]);
    s.move_filter(ids[2], 2).await?;
    assert_eq!(names(s, &FilterScope::Global).await?, ["b", "c", "a", "d"]);
    let unmoved = s.move_filter(ids[2], 2).await?;
    assert_eq!(unmoved.position, 2);

    let err = s.move_filter(ids[0], 0).await.expect_err("position 0");
    assert!(matches!(err, StoreError::InvalidFilter { .. }), "{err:?}");
    let err = s
        .move_filter(i64::MAX, 1)
        .await
        .expect_err("no such filter");
    assert!(matches!(err, StoreError::NoSuchFilter { .. }), "{err:?}");

    assert!(s.delete_filter(ids[2]).await?);
    assert_eq!(names(s, &FilterScope::Global).await?, ["b", "a", "d"]);
    assert!(
        !s.delete_filter(ids[2]).await?,
        "second delete finds nothing"
    );
    assert!(s.filter(ids[2]).await?.is_none());
    // The user's scope was not touched.
    assert_eq!(s.filter(theirs.id).await?, Some(theirs));

    // Deleting the user removes their filters, not the global ones.
    s.add_filter(&new(&alice(), "y", FilterAction::DoNotForward))
        .await?;
    assert!(s.delete_user(ALICE).await?);
    s.add_user(ALICE, None).await?;
    assert!(s.list_filters(&alice()).await?.is_empty());
    assert_eq!(names(s, &FilterScope::Global).await?, ["b", "a", "d"]);
    Ok(())
}

#[tokio::test]
async fn bad_filters_are_refused_with_a_reason() -> anyhow::Result<()> {
    let f = fixture().await?;
    let s = &f.store;
    let base = new(&FilterScope::Global, "ok", FilterAction::Forward);
    let long = "x".repeat(MAX_FILTER_PATTERN + 1);
    let cases = [
        (
            NewFilter {
                name: "   ".into(),
                ..base.clone()
            },
            "a filter needs a name",
        ),
        (
            NewFilter {
                conditions: FilterConditions {
                    subject: Some(long.clone()),
                    ..FilterConditions::default()
                },
                ..base.clone()
            },
            "the subject pattern is 257 bytes long; at most 256 are allowed",
        ),
        (
            NewFilter {
                conditions: FilterConditions {
                    from: Some("a\u{0}b".into()),
                    ..FilterConditions::default()
                },
                ..base.clone()
            },
            "the from pattern may not hold control characters",
        ),
        (
            NewFilter {
                conditions: FilterConditions {
                    importance: Some("urgent".into()),
                    ..FilterConditions::default()
                },
                ..base.clone()
            },
            "importance \"urgent\" is not one of high, normal, low",
        ),
        (
            NewFilter {
                position: Some(0),
                ..base.clone()
            },
            "filter positions start at 1",
        ),
    ];
    for (bad, reason) in cases {
        let err = s.add_filter(&bad).await.expect_err(reason);
        assert!(
            matches!(&err, StoreError::InvalidFilter { reason: r } if r == reason),
            "{err:?}, expected {reason:?}"
        );
    }
    assert!(s.list_filters(&FilterScope::Global).await?.is_empty());
    // 256 bytes is allowed, and an empty pattern is no condition.
    let ok = s
        .add_filter(&NewFilter {
            conditions: FilterConditions {
                subject: Some("x".repeat(MAX_FILTER_PATTERN)),
                from: Some(String::new()),
                ..FilterConditions::default()
            },
            ..base
        })
        .await?;
    assert_eq!(ok.conditions.from, None);
    Ok(())
}

#[tokio::test]
async fn concurrent_changes_keep_positions_without_gaps() -> anyhow::Result<()> {
    let f = fixture().await?;
    let mut tasks = Vec::new();
    for i in 0..8u32 {
        let s = f.store.clone();
        tasks.push(tokio::spawn(async move {
            s.add_filter(&NewFilter {
                // Half of them ask for the top.
                position: (i % 2 == 0).then_some(1),
                ..new(
                    &FilterScope::Global,
                    &format!("f{i}"),
                    FilterAction::Forward,
                )
            })
            .await
        }));
    }
    for t in tasks {
        t.await??;
    }
    assert_eq!(names(&f.store, &FilterScope::Global).await?.len(), 8);
    Ok(())
}
