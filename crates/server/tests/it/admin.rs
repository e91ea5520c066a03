//! The administration API, in process (`app(state).oneshot`) and over HTTP.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use bramble_proto::SrpId;
use bramble_server::admin::{AdminState, app};
use bramble_server::router::{Router, RouterConfig};
use bramble_store::Store;
use bramble_testkit::TestDb;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::support::Result;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

async fn state() -> Result<(Arc<AdminState>, TestDb)> {
    let db = TestDb::new().await?;
    let store = Store::open(db.url()).await?;
    let srp = SrpId::new(1).ok_or("srp")?;
    let (events, _) = tokio::sync::broadcast::channel(8);
    // A router pointed at a closed port: the status endpoint reports it down.
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

async fn call(
    state: &Arc<AdminState>,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<(StatusCode, serde_json::Value)> {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(b.to_owned()))?,
        None => req.body(Body::empty())?,
    };
    let resp = app(state.clone()).oneshot(req).await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    let json = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
        })
    };
    Ok((status, json))
}

#[tokio::test]
async fn requests_without_a_valid_token_are_refused() -> Result {
    let (s, _db) = state().await?;
    for (method, uri) in [
        ("GET", "/api/v1/users"),
        ("POST", "/api/v1/users"),
        ("GET", "/api/v1/users/a@b.c"),
        ("DELETE", "/api/v1/users/a@b.c"),
        ("GET", "/api/v1/status"),
    ] {
        for token in [
            None,
            Some("wrong"),
            Some(""),
            Some("0123456789abcdef0123456789abcdeF"),
        ] {
            let (status, body) =
                call(&s, method, uri, token, Some(r#"{"email":"x@example.com"}"#)).await?;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} with {token:?}"
            );
            assert_eq!(body["error"]["code"], "unauthorized");
        }
    }
    // Nothing was changed by the refused requests.
    let (status, body) = call(&s, "GET", "/api/v1/users", Some(TOKEN), None).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, serde_json::json!([]));
    let (status, _) = call(&s, "GET", "/healthz", None, None).await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn users_can_be_added_shown_listed_and_deleted() -> Result {
    let (s, _db) = state().await?;
    let (status, u) = call(
        &s,
        "POST",
        "/api/v1/users",
        Some(TOKEN),
        Some(r#"{"email":"Alice@Example.com","display_name":"Alice"}"#),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED, "{u}");
    assert_eq!(u["email"], "alice@example.com");
    assert_eq!(u["status"], "Initializing");

    let (status, e) = call(
        &s,
        "POST",
        "/api/v1/users",
        Some(TOKEN),
        Some(r#"{"email":"alice@example.com"}"#),
    )
    .await?;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(e["error"]["code"], "user_exists");
    let (status, e) = call(
        &s,
        "POST",
        "/api/v1/users",
        Some(TOKEN),
        Some(r#"{"email":"not-an-address"}"#),
    )
    .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    let (status, _) = call(&s, "POST", "/api/v1/users", Some(TOKEN), Some("{not json")).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, u) = call(
        &s,
        "GET",
        "/api/v1/users/ALICE@example.com",
        Some(TOKEN),
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(u["display_name"], "Alice");
    assert_eq!(u["history"][0]["status"], "Initializing");
    assert!(u["device"].is_null());

    let (status, list) = call(&s, "GET", "/api/v1/users", Some(TOKEN), None).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().map(Vec::len), Some(1));

    let (status, st) = call(&s, "GET", "/api/v1/status", Some(TOKEN), None).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(st["srp_id"], "S00000001");
    assert_eq!(st["users"], 1);

    let (status, _) = call(
        &s,
        "DELETE",
        "/api/v1/users/alice@example.com",
        Some(TOKEN),
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, e) = call(
        &s,
        "GET",
        "/api/v1/users/alice@example.com",
        Some(TOKEN),
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(e["error"]["code"], "no_such_user");
    Ok(())
}

#[tokio::test]
async fn activation_password_is_registered_and_never_stored() -> Result {
    let (s, db) = state().await?;
    call(
        &s,
        "POST",
        "/api/v1/users",
        Some(TOKEN),
        Some(r#"{"email":"dave@example.com"}"#),
    )
    .await?;
    let secret = "Marker-Pw-7f3a91";
    let body = format!(r#"{{"password":"{secret}","expires":"2h","max_attempts":3}}"#);
    let (status, v) = call(
        &s,
        "POST",
        "/api/v1/users/dave@example.com/activation-password",
        Some(TOKEN),
        Some(&body),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(
        v.get("password").is_none(),
        "a chosen password is not echoed: {v}"
    );
    assert_eq!(v["max_attempts"], 3);

    let act = s
        .store
        .activation("dave@example.com")
        .await?
        .ok_or("no activation record")?;
    assert!(bramble_proto::pake::is_record(&act.record));
    assert!(
        !act.record
            .windows(secret.len())
            .any(|w| w == secret.as_bytes())
    );
    let u = s.store.user("dave@example.com").await?.ok_or("user")?;
    assert!(u.has_activation_password);
    assert_eq!(u.status.to_string(), "Initializing");
    assert!(
        !format!(
            "{u:?}{:?}",
            s.store.status_history("dave@example.com").await?
        )
        .contains(secret)
    );
    if db.kind() == bramble_testkit::DbKind::Sqlite {
        // The whole database file (and its write-ahead log) never holds the password.
        let path = db
            .url()
            .trim_start_matches("sqlite://")
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        for p in [path.clone(), format!("{path}-wal")] {
            if let Ok(bytes) = std::fs::read(&p) {
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{p} holds the password"
                );
            }
        }
    }

    // A generated one is returned once; bad requests are refused with a reason.
    let (status, v) = call(
        &s,
        "POST",
        "/api/v1/users/dave@example.com/activation-password",
        Some(TOKEN),
        Some(r#"{"generate":true}"#),
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["password"].as_str().map(str::len), Some(14));
    for bad in [
        r#"{}"#,
        r#"{"password":"abc"}"#,
        r#"{"password":"longenough","generate":true}"#,
        r#"{"generate":true,"expires":"90d"}"#,
        r#"{"generate":true,"expires":"soon"}"#,
    ] {
        let (status, e) = call(
            &s,
            "POST",
            "/api/v1/users/dave@example.com/activation-password",
            Some(TOKEN),
            Some(bad),
        )
        .await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {e}");
    }
    let (status, _) = call(
        &s,
        "POST",
        "/api/v1/users/nobody@example.com/activation-password",
        Some(TOKEN),
        Some(r#"{"generate":true}"#),
    )
    .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    Ok(())
}

/// `GET path` with the site's token: status, `X-Total-Count`, the `Link` header, the body.
async fn listed(
    site: &crate::activation::Site,
    path: &str,
) -> Result<(StatusCode, u64, String, serde_json::Value)> {
    let resp = site
        .admin
        .get(format!("{}/api/v1{path}", site.base))
        .bearer_auth(&site.token)
        .send()
        .await?;
    let status = resp.status();
    let head = |k: &str| {
        resp.headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (total, link) = (head("x-total-count"), head("link"));
    let body = resp.json().await?;
    Ok((status, total.parse().unwrap_or(0), link, body))
}

#[tokio::test]
async fn every_list_is_paged_with_its_filters_kept() -> Result {
    use reqwest::Method;
    let site = crate::activation::Site::start().await?;
    for (email, name) in [
        ("ann@example.com", "Ann Lee"),
        ("ben@example.com", "Ben Ray"),
        ("cat@example.com", "Cat Annan"),
    ] {
        site.api(
            Method::POST,
            "/users",
            Some(serde_json::json!({ "email": email, "display_name": name })),
        )
        .await?;
    }
    for g in ["g1", "g2", "g3"] {
        site.api(
            Method::POST,
            "/groups",
            Some(serde_json::json!({ "name": g })),
        )
        .await?;
    }

    let (status, total, link, body) = listed(&site, "/users?limit=2").await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((total, body.as_array().map(Vec::len)), (3, Some(2)));
    assert_eq!(link, "</api/v1/users?offset=2&limit=2>; rel=\"next\"");
    let (_, _, link, body) = listed(&site, "/users?offset=2&limit=2").await?;
    assert_eq!(body[0]["email"], "cat@example.com");
    assert!(link.is_empty(), "{link}");

    // the filters narrow the total and stay in the next link
    let (_, total, link, body) = listed(&site, "/users?q=ANN&limit=1").await?;
    assert_eq!(total, 2, "{body}");
    assert_eq!(body[0]["email"], "ann@example.com");
    assert_eq!(link, "</api/v1/users?q=ANN&offset=1&limit=1>; rel=\"next\"");
    let (_, total, _, _) = listed(&site, "/users?status=initializing").await?;
    assert_eq!(total, 3);
    let (status, _, _, body) = listed(&site, "/users?status=Sleeping").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Waiting for Services")),
        "{body}"
    );

    let (_, total, link, body) = listed(&site, "/groups?limit=1&offset=1").await?;
    assert_eq!((total, body[0]["name"].as_str()), (3, Some("g2")));
    assert!(link.contains("offset=2"), "{link}");
    for path in [
        "/policies",
        "/commands?open=true",
        "/filters",
        "/users/ann@example.com/filters",
        "/software/configs",
        "/software/packages",
        "/software/jobs",
    ] {
        let (status, _, _, body) = listed(&site, path).await?;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let (status, _, _, _) = listed(
            &site,
            &format!(
                "{path}{}limit=0",
                if path.contains('?') { '&' } else { '?' }
            ),
        )
        .await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} takes limit=0");
    }
    site.shutdown().await;
    Ok(())
}
