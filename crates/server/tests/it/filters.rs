//! Push-mail filters through the administration API, in process (`app(state).oneshot`).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use bramble_proto::SrpId;
use bramble_proto::schema::{Importance, MailHeaders};
use bramble_server::admin::{AdminState, app};
use bramble_server::messaging::mail::filter::decide;
use bramble_server::router::{Router, RouterConfig};
use bramble_store::{FilterAction, FilterScope, Store};
use bramble_testkit::TestDb;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::support::Result;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

async fn state() -> Result<(Arc<AdminState>, TestDb)> {
    let db = TestDb::new().await?;
    let store = Store::open(db.url()).await?;
    let srp = SrpId::new(1).ok_or("srp")?;
    let (events, _) = tokio::sync::broadcast::channel(8);
    // A router pointed at a closed port: the filters do not need the relay.
    let (router, _inbound) = Router::spawn(
        RouterConfig {
            relay_addr: "127.0.0.1:9".into(),
            fingerprint: None,
            srp,
            srp_key: "k".into(),
            backoff_min: std::time::Duration::from_secs(5),
            backoff_max: std::time::Duration::from_secs(5),
        },
        events,
        None,
    );
    Ok((
        Arc::new(AdminState::new(store, TOKEN.into(), router, srp)),
        db,
    ))
}

/// `method uri` with the token and a JSON body; the status and the JSON answer (null when
/// empty).
async fn call(
    state: &Arc<AdminState>,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> Result<(StatusCode, Value)> {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
    let req = match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_string()))?,
        None => req.body(Body::empty())?,
    };
    let resp = app(state.clone()).oneshot(req).await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Ok((status, json))
}

/// The names of a filter list, in order.
fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|a| a.iter().filter_map(|f| f["name"].as_str()).collect())
        .unwrap_or_default()
}

/// Asserts a 400 whose message contains `says`.
#[track_caller]
fn assert_bad(answer: &(StatusCode, Value), says: &str) {
    let (status, body) = answer;
    assert_eq!(*status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "bad_request", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "{message:?} lacks {says:?}");
}

#[tokio::test]
async fn global_filters_are_added_listed_changed_moved_and_removed() -> Result {
    let (s, _db) = state().await?;
    let (status, list) = call(&s, "GET", "/api/v1/filters", None).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list, json!([]));

    let (status, boss) = call(
        &s,
        "POST",
        "/api/v1/filters",
        Some(json!({
            "name": "Boss",
            "conditions": { "from": "*@boss.example.com", "importance": "High" },
            "action": "forward_with_priority",
        })),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{boss}");
    assert_eq!(boss["scope"], "global");
    assert_eq!(boss["user"], Value::Null);
    assert_eq!(boss["position"], 1);
    assert_eq!(boss["enabled"], true);
    assert_eq!(boss["action"], "forward_with_priority");
    assert_eq!(
        boss["conditions"],
        json!({ "from": "*@boss.example.com", "to": null, "cc": null, "subject": null,
                "importance": "high" })
    );
    assert!(
        boss["created_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let boss_id = boss["id"].as_i64().ok_or("an id")?;

    for (name, action) in [("Spam", "drop"), ("News", "do not forward")] {
        let (status, f) = call(
            &s,
            "POST",
            "/api/v1/filters",
            Some(json!({ "name": name, "conditions": { "subject": "[news]" }, "action": action })),
        )
        .await?;
        assert_eq!(status, StatusCode::CREATED, "{f}");
        assert_eq!(f["action"], "do_not_forward");
    }
    let (status, top) = call(
        &s,
        "POST",
        "/api/v1/filters",
        Some(json!({ "name": "Top", "action": "forward", "position": 1, "enabled": false })),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{top}");
    assert_eq!(top["enabled"], false);
    let (_, list) = call(&s, "GET", "/api/v1/filters", None).await?;
    assert_eq!(names(&list), ["Top", "Boss", "Spam", "News"]);

    let (status, shown) = call(&s, "GET", &format!("/api/v1/filters/{boss_id}"), None).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["name"], "Boss");
    assert_eq!(shown["position"], 2);

    // PATCH: absent stays, null removes, a value sets.
    let (status, edited) = call(
        &s,
        "PATCH",
        &format!("/api/v1/filters/{boss_id}"),
        Some(json!({
            "name": "The boss",
            "conditions": { "importance": null, "subject": "budget" },
            "enabled": false,
        })),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["name"], "The boss");
    assert_eq!(edited["enabled"], false);
    assert_eq!(edited["action"], "forward_with_priority");
    assert_eq!(edited["conditions"]["from"], "*@boss.example.com");
    assert_eq!(edited["conditions"]["subject"], "budget");
    assert_eq!(edited["conditions"]["importance"], Value::Null);

    let (status, moved) = call(
        &s,
        "POST",
        &format!("/api/v1/filters/{boss_id}/move"),
        Some(json!({ "position": 4 })),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(moved["position"], 4);
    let (_, list) = call(&s, "GET", "/api/v1/filters", None).await?;
    assert_eq!(names(&list), ["Top", "Spam", "News", "The boss"]);

    let (status, _) = call(&s, "DELETE", &format!("/api/v1/filters/{boss_id}"), None).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for (method, uri) in [
        ("GET", format!("/api/v1/filters/{boss_id}")),
        ("DELETE", format!("/api/v1/filters/{boss_id}")),
        ("PATCH", format!("/api/v1/filters/{boss_id}")),
    ] {
        let (status, e) = call(&s, method, &uri, Some(json!({}))).await?;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}: {e}");
        assert_eq!(e["error"]["code"], "no_such_filter");
        assert_eq!(
            e["error"]["message"],
            format!("no filter with id {boss_id}")
        );
    }
    let (_, list) = call(&s, "GET", "/api/v1/filters", None).await?;
    let positions: Vec<i64> = list
        .as_array()
        .map(|a| a.iter().filter_map(|f| f["position"].as_i64()).collect())
        .unwrap_or_default();
    assert_eq!(positions, [1, 2, 3]);
    Ok(())
}

#[tokio::test]
async fn user_filters_belong_to_their_user() -> Result {
    let (s, _db) = state().await?;
    let (status, e) = call(
        &s,
        "POST",
        "/api/v1/users/alice@example.com/filters",
        Some(json!({ "name": "Mine", "action": "forward" })),
    )
    .await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "{e}");
    assert_eq!(e["error"]["code"], "no_such_user");
    let (status, _) = call(&s, "GET", "/api/v1/users/alice@example.com/filters", None).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);

    call(
        &s,
        "POST",
        "/api/v1/users",
        Some(json!({ "email": "alice@example.com" })),
    )
    .await?;
    let (status, mine) = call(
        &s,
        "POST",
        "/api/v1/users/Alice@Example.com/filters",
        Some(json!({ "name": "Lunch", "conditions": { "subject": "lunch" }, "action": "drop" })),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{mine}");
    assert_eq!(mine["scope"], "user");
    assert_eq!(mine["user"], "alice@example.com");
    // The same name as a global filter is fine; twice in one scope is not.
    let (status, _) = call(
        &s,
        "POST",
        "/api/v1/filters",
        Some(json!({ "name": "Lunch", "action": "priority" })),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED);
    let (status, e) = call(
        &s,
        "POST",
        "/api/v1/users/alice@example.com/filters",
        Some(json!({ "name": "LUNCH", "action": "forward" })),
    )
    .await?;
    assert_eq!(status, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["error"]["code"], "filter_exists");
    assert_eq!(
        e["error"]["message"],
        "the filters of alice@example.com already have one named \"LUNCH\"; choose another name"
    );

    let (_, theirs) = call(&s, "GET", "/api/v1/users/alice@example.com/filters", None).await?;
    assert_eq!(names(&theirs), ["Lunch"]);
    assert_eq!(theirs[0]["action"], "do_not_forward");
    let (_, global) = call(&s, "GET", "/api/v1/filters", None).await?;
    assert_eq!(names(&global), ["Lunch"]);
    assert_eq!(global[0]["action"], "forward_with_priority");

    // What the messaging agent will do with them: the global filter decides first.
    let headers = MailHeaders {
        from: "Bob <bob@example.com>".into(),
        subject: "Lunch today?".into(),
        importance: Importance::Normal as i32,
        ..MailHeaders::default()
    };
    let g = s.store.list_filters(&FilterScope::Global).await?;
    let u = s
        .store
        .list_filters(&FilterScope::User("alice@example.com".into()))
        .await?;
    let d = decide(&g, &u, &headers);
    assert_eq!(d.action, FilterAction::ForwardWithPriority);
    let d = decide(&[], &u, &headers);
    assert_eq!(d.action, FilterAction::DoNotForward);
    assert_eq!(d.filter.as_deref(), Some("Lunch"));

    // A user's filters go with the user.
    let (status, _) = call(&s, "DELETE", "/api/v1/users/alice@example.com", None).await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let id = mine["id"].as_i64().ok_or("an id")?;
    let (status, _) = call(&s, "GET", &format!("/api/v1/filters/{id}"), None).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn bad_input_is_a_400_saying_what_to_fix() -> Result {
    let (s, _db) = state().await?;
    let add = |body: Value| call(&s, "POST", "/api/v1/filters", Some(body));
    assert_bad(
        &add(json!({ "name": "x", "action": "fwd" })).await?,
        "\"fwd\" is not a filter action; use forward, forward_with_priority",
    );
    assert_bad(
        &add(json!({ "name": "x" })).await?,
        "give the filter an action",
    );
    assert_bad(
        &add(json!({ "name": "x", "action": "forward", "conditions": { "importance": "urgent" } }))
            .await?,
        "importance \"urgent\" is not one of high, normal, low",
    );
    assert_bad(
        &add(json!({ "name": "  ", "action": "forward" })).await?,
        "a filter needs a name",
    );
    assert_bad(
        &add(json!({ "action": "forward" })).await?,
        "a filter needs a name",
    );
    assert_bad(
        &add(json!({ "name": "x", "action": "forward",
                     "conditions": { "subject": "s".repeat(257) } }))
        .await?,
        "the subject pattern is 257 bytes long; at most 256 are allowed",
    );
    assert_bad(
        &add(json!({ "name": "x", "action": "forward", "position": 0 })).await?,
        "filter positions start at 1",
    );
    assert_bad(
        &add(json!({ "name": "x", "action": "forward", "conditions": { "form": "boss" } })).await?,
        "unknown field `form`",
    );
    let (status, _) = call(&s, "POST", "/api/v1/filters", None).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, list) = call(&s, "GET", "/api/v1/filters", None).await?;
    assert_eq!(list, json!([]), "a refused filter was stored");

    // 256 bytes is fine.
    let (status, ok) = add(json!({ "name": "x", "action": "forward",
                                   "conditions": { "subject": "s".repeat(256) } }))
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{ok}");
    let id = ok["id"].as_i64().ok_or("an id")?;
    assert_bad(
        &call(
            &s,
            "PATCH",
            &format!("/api/v1/filters/{id}"),
            Some(json!({ "action": "bounce" })),
        )
        .await?,
        "\"bounce\" is not a filter action",
    );
    assert_bad(
        &call(
            &s,
            "PATCH",
            &format!("/api/v1/filters/{id}"),
            Some(json!({ "name": "" })),
        )
        .await?,
        "a filter needs a name",
    );
    assert_bad(
        &call(
            &s,
            "POST",
            &format!("/api/v1/filters/{id}/move"),
            Some(json!({ "position": 0 })),
        )
        .await?,
        "filter positions start at 1",
    );
    assert_bad(
        &call(&s, "GET", "/api/v1/filters/seven", None).await?,
        "\"seven\" is not a filter id",
    );
    let (status, e) = call(
        &s,
        "POST",
        "/api/v1/filters/999999/move",
        Some(json!({ "position": 1 })),
    )
    .await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "{e}");
    let (_, shown) = call(&s, "GET", &format!("/api/v1/filters/{id}"), None).await?;
    assert_eq!(shown["action"], "forward", "a refused change was stored");
    Ok(())
}

#[tokio::test]
async fn filter_routes_need_the_token() -> Result {
    let (s, _db) = state().await?;
    for (method, uri) in [
        ("GET", "/api/v1/filters"),
        ("POST", "/api/v1/filters"),
        ("GET", "/api/v1/filters/1"),
        ("PATCH", "/api/v1/filters/1"),
        ("DELETE", "/api/v1/filters/1"),
        ("POST", "/api/v1/filters/1/move"),
        ("GET", "/api/v1/users/a@example.com/filters"),
        ("POST", "/api/v1/users/a@example.com/filters"),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, "Bearer wrong")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"name":"x","action":"forward"}"#))?;
        let resp = app(s.clone()).oneshot(req).await?;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{method} {uri}");
    }
    let (_, list) = call(&s, "GET", "/api/v1/filters", None).await?;
    assert_eq!(list, json!([]));
    Ok(())
}
