//! Administrator accounts, roles and the audit log, over HTTP against a running server: the
//! permission matrix of BES 5's six preset roles against every endpoint, console logins and
//! sessions, API tokens, custom roles, and what the audit log records.

use std::collections::BTreeSet;

use bramble_server::admin::access::{ENDPOINTS, PRESETS};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::activation::Site;
use crate::support::Result;

/// The expected matrix, written out from BES 5's role tables (BES Express 5.0's
/// "Preconfigured administrative roles": User Only creates, views, edits and deletes groups as
/// well as users, Senior Helpdesk creates groups but does not delete them, Enterprise only views
/// role assignments), not from the server's table: each endpoint, and the preset roles allowed to use it, by letter —
/// S Security, E Enterprise, H Senior Helpdesk, J Junior Helpdesk, V Server Only,
/// U User Only. IT admin commands have one row per kind (`#kind`).
const MATRIX: &[(&str, &str, &str)] = &[
    ("GET", "/status", "SEHJV"),
    ("GET", "/me", "SEHJVU"),
    ("GET", "/permissions", "SEHJVU"),
    ("POST", "/logout", "SEHJVU"),
    ("GET", "/users", "SEHJU"),
    ("POST", "/users", "SEHU"),
    ("GET", "/users/{email}", "SEHJU"),
    ("PATCH", "/users/{email}", "SEHJU"),
    ("DELETE", "/users/{email}", "SEHU"),
    ("PUT", "/users/{email}/mail-password", "SEHJU"),
    ("GET", "/users/{email}/mail-settings", "SEHJU"),
    ("PATCH", "/users/{email}/mail-settings", "SEHJU"),
    ("POST", "/users/{email}/activation-password", "SEHJU"),
    ("GET", "/users/{email}/filters", "SEHJU"),
    ("POST", "/users/{email}/filters", "SEHJU"),
    ("GET", "/users/{email}/sync", "SEHJU"),
    ("DELETE", "/users/{email}/sync", "SEHJU"),
    ("PUT", "/users/{email}/sync/{database}", "SEHJU"),
    ("DELETE", "/users/{email}/sync/{database}", "SEHJU"),
    ("PUT", "/users/{email}/policy", "SE"),
    ("PUT", "/users/{email}/software", "SE"),
    ("POST", "/users/{email}/commands#lock", "SEHJ"),
    ("POST", "/users/{email}/commands#wipe", "SEH"),
    ("POST", "/users/{email}/commands#remove-org-data", "SEH"),
    ("POST", "/users/{email}/commands#regenerate-key", "SEHJ"),
    ("POST", "/users/{email}/commands#resend-policy", "SEHJ"),
    (
        "POST",
        "/users/{email}/commands#resend-service-books",
        "SEHJ",
    ),
    ("GET", "/directory", "SEHJU"),
    ("GET", "/directory/search", "SEHU"),
    ("POST", "/directory/import", "SEHU"),
    ("POST", "/directory/sync", "SEHJU"),
    ("GET", "/commands", "SEHJU"),
    ("GET", "/commands/{id}", "SEHJU"),
    ("POST", "/commands/{id}/cancel", "SEHJ"),
    ("GET", "/filters", "SEHJV"),
    ("POST", "/filters", "SEV"),
    ("GET", "/filters/{id}", "SEHJV"),
    ("PATCH", "/filters/{id}", "SEV"),
    ("DELETE", "/filters/{id}", "SEV"),
    ("POST", "/filters/{id}/move", "SEV"),
    ("GET", "/policy-rules", "SEHJ"),
    ("GET", "/policy-presets", "SEHJ"),
    ("GET", "/policies", "SEHJ"),
    ("POST", "/policies", "SE"),
    ("GET", "/policies/{name}", "SEHJ"),
    ("PATCH", "/policies/{name}", "SE"),
    ("DELETE", "/policies/{name}", "SE"),
    ("GET", "/policies/{name}/versions/{version}", "SEHJ"),
    ("GET", "/policies/{name}/diff", "SEHJ"),
    ("GET", "/groups", "SEHJU"),
    ("POST", "/groups", "SEHU"),
    ("GET", "/groups/{name}", "SEHJU"),
    ("DELETE", "/groups/{name}", "SEU"),
    ("PUT", "/groups/{name}/members/{email}", "SEHU"),
    ("DELETE", "/groups/{name}/members/{email}", "SEHU"),
    ("PUT", "/groups/{name}/policy", "SE"),
    ("PUT", "/groups/{name}/software", "SE"),
    ("GET", "/groups/{name}/sync", "SEHJU"),
    ("DELETE", "/groups/{name}/sync", "SEHU"),
    ("PUT", "/groups/{name}/sync/{database}", "SEHU"),
    ("DELETE", "/groups/{name}/sync/{database}", "SEHU"),
    ("GET", "/software/packages", "SEHJ"),
    ("POST", "/software/packages", "SE"),
    ("DELETE", "/software/packages/{name}/{version}", "SE"),
    ("GET", "/software/configs", "SEHJ"),
    ("POST", "/software/configs", "SE"),
    ("GET", "/software/configs/{name}", "SEHJ"),
    ("PATCH", "/software/configs/{name}", "SE"),
    ("DELETE", "/software/configs/{name}", "SE"),
    ("PUT", "/software/configs/{name}/apps/{app}", "SE"),
    ("DELETE", "/software/configs/{name}/apps/{app}", "SE"),
    ("GET", "/software/jobs", "SEHJ"),
    ("GET", "/roles", "SE"),
    ("POST", "/roles", "S"),
    ("GET", "/roles/{name}", "SE"),
    ("PATCH", "/roles/{name}", "S"),
    ("DELETE", "/roles/{name}", "S"),
    ("GET", "/accounts", "SE"),
    ("POST", "/accounts", "S"),
    ("GET", "/accounts/{name}", "SE"),
    ("PATCH", "/accounts/{name}", "S"),
    ("DELETE", "/accounts/{name}", "S"),
    ("PUT", "/accounts/{name}/password", "S"),
    ("PUT", "/accounts/{name}/roles/{role}", "S"),
    ("DELETE", "/accounts/{name}/roles/{role}", "S"),
    ("GET", "/tokens", "SEHJVU"),
    ("POST", "/tokens", "SEHJVU"),
    ("DELETE", "/tokens/{id}", "SEHJVU"),
    ("GET", "/audit", "SE"),
];

const LETTERS: [char; 6] = ['S', 'E', 'H', 'J', 'V', 'U'];

/// The path with every parameter naming nothing that exists, so an allowed request changes
/// nothing (it answers 4xx) and a refused one is refused before anything is looked up.
fn concrete(path: &str) -> String {
    path.replace("{email}", "nobody%40example.com")
        .replace("{database}", "calendar")
        .replace("{id}", "999999")
        .replace("{version}", "1.0")
        .replace("{role}", "no-such-role")
        .replace("{app}", "no-such-app")
        .replace("{name}", "no-such-thing")
}

/// Makes an account holding `role`, and an API token for it.
async fn account_with(site: &Site, name: &str, roles: &[&str]) -> Result<String> {
    site.api(
        Method::POST,
        "/accounts",
        Some(json!({ "name": name, "roles": roles })),
    )
    .await?;
    let t = site
        .api(
            Method::POST,
            "/tokens",
            Some(json!({ "name": "matrix", "account": name })),
        )
        .await?;
    Ok(t["token"]
        .as_str()
        .ok_or("no token in the answer")?
        .to_owned())
}

async fn call(
    site: &Site,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<(StatusCode, String)> {
    let m = Method::from_bytes(method.as_bytes())?;
    let mut req = site
        .admin
        .request(m, format!("{}/api/v1{path}", site.base))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await?;
    let status = resp.status();
    Ok((status, resp.text().await?))
}

#[tokio::test]
async fn each_preset_role_against_each_endpoint() -> Result {
    let site = Site::start().await?;
    // The matrix covers exactly the server's endpoints.
    let table: BTreeSet<(String, String)> = ENDPOINTS
        .iter()
        .map(|e| (e.method.to_string(), e.path.to_owned()))
        .collect();
    let matrix: BTreeSet<(String, String)> = MATRIX
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.split('#').next().unwrap_or(p).to_owned()))
        .collect();
    assert_eq!(
        table, matrix,
        "the matrix and the server's endpoints differ"
    );

    let mut tokens = Vec::new();
    for (i, preset) in PRESETS.iter().enumerate() {
        tokens.push(account_with(&site, &format!("role{i}"), &[preset.name]).await?);
    }
    let mut wrong = Vec::new();
    for (method, path, allowed) in MATRIX {
        let (route, kind) = match path.split_once('#') {
            Some((r, k)) => (r, Some(k)),
            None => (*path, None),
        };
        let body = match kind {
            Some(k) => Some(json!({ "command": k })),
            None if *method != "GET" && *method != "DELETE" => Some(json!({})),
            None => None,
        };
        for (letter, token) in LETTERS.iter().zip(&tokens) {
            let (status, text) = call(&site, token, method, &concrete(route), body.clone()).await?;
            let expect_allowed = allowed.contains(*letter);
            let refused = status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED;
            if expect_allowed == refused || status.is_server_error() {
                wrong.push(format!(
                    "{letter} {method} {path}: {status} (expected {}) {text}",
                    if expect_allowed { "allowed" } else { "403" }
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "permission matrix broken:\n{}",
        wrong.join("\n")
    );

    // Refusals are in the audit log, with who asked.
    let denied = site
        .api(
            Method::GET,
            "/audit?result=denied&actor=role5&limit=1000",
            None,
        )
        .await?;
    let denied = denied.as_array().ok_or("audit is a list")?;
    assert!(
        denied.iter().any(|e| e["action"] == "Delete IT policy"
            && e["target"] == "no-such-thing"
            && e["source"] == "127.0.0.1"),
        "{denied:?}"
    );
    Ok(())
}

#[tokio::test]
async fn custom_roles_start_empty_and_several_roles_unite() -> Result {
    let site = Site::start().await?;
    site.api(Method::POST, "/roles", Some(json!({ "name": "Auditors" })))
        .await?;
    let token = account_with(&site, "carol", &["Auditors"]).await?;
    let me: Value = serde_json::from_str(&call(&site, &token, "GET", "/me", None).await?.1)?;
    assert_eq!(me["permissions"], json!([]));
    assert_eq!(
        call(&site, &token, "GET", "/audit", None).await?.0,
        StatusCode::FORBIDDEN
    );

    site.api(
        Method::PATCH,
        "/roles/Auditors",
        Some(json!({ "permissions": ["audit.view"] })),
    )
    .await?;
    assert_eq!(
        call(&site, &token, "GET", "/audit", None).await?.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&site, &token, "GET", "/users", None).await?.0,
        StatusCode::FORBIDDEN
    );
    site.api(
        Method::PUT,
        "/accounts/carol/roles/User Only Administrator",
        None,
    )
    .await?;
    assert_eq!(
        call(&site, &token, "GET", "/users", None).await?.0,
        StatusCode::OK
    );
    let shown = site.api(Method::GET, "/accounts/carol", None).await?;
    assert_eq!(
        shown["roles"],
        json!(["User Only Administrator", "Auditors"])
    );
    assert!(
        shown["permissions"]
            .as_array()
            .is_some_and(|p| p.contains(&json!("audit.view")) && p.contains(&json!("user.delete")))
    );

    // Presets are the server's; unknown permissions are refused in words.
    let (status, text) = call(
        &site,
        &site.token,
        "PATCH",
        "/roles/Junior Helpdesk Administrator",
        Some(json!({ "permissions": ["audit.view"] })),
    )
    .await?;
    assert_eq!(status, StatusCode::CONFLICT, "{text}");
    let (status, text) = call(
        &site,
        &site.token,
        "POST",
        "/roles",
        Some(json!({ "name": "Odd", "permissions": ["launch.missiles"] })),
    )
    .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("is not a permission"), "{text}");

    // A disabled account's token stops working at once.
    site.api(
        Method::PATCH,
        "/accounts/carol",
        Some(json!({ "disabled": true })),
    )
    .await?;
    assert_eq!(
        call(&site, &token, "GET", "/me", None).await?.0,
        StatusCode::UNAUTHORIZED
    );
    Ok(())
}

#[tokio::test]
async fn console_login_sessions_and_their_limits() -> Result {
    let site = Site::start().await?;
    site.api(
        Method::POST,
        "/accounts",
        Some(json!({
            "name": "dave", "password": "correct horse",
            "roles": ["Junior Helpdesk Administrator"],
        })),
    )
    .await?;
    // The password is kept as an Argon2id hash (PHC string), never as given.
    let hash = site
        .server()
        .store()
        .account_password_hash("dave")
        .await?
        .ok_or("dave has a password")?;
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    assert!(!hash.contains("correct horse"), "{hash}");

    let client = reqwest::Client::new();
    let login = |pw: &'static str| {
        client
            .post(format!("{}/api/v1/login", site.base))
            .json(&json!({ "name": "Dave", "password": pw }))
            .send()
    };
    let resp = login("correct horse").await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .ok_or("no cookie")?
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().ok_or("cookie")?.to_owned();
    let me: Value = client
        .get(format!("{}/api/v1/me", site.base))
        .header("cookie", &session)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(me["account"], "dave");
    assert_eq!(me["via"], "session");

    // A request with the session from another site is refused.
    let resp = client
        .post(format!("{}/api/v1/users", site.base))
        .header("cookie", &session)
        .header("origin", "http://evil.example")
        .json(&json!({ "email": "x@example.com" }))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.text().await?.contains("cross_site"));

    // Logging out ends the session.
    let resp = client
        .post(format!("{}/api/v1/logout", site.base))
        .header("cookie", &session)
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = client
        .get(format!("{}/api/v1/me", site.base))
        .header("cookie", &session)
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // Wrong passwords: refused in words, then the account is held for a while.
    for _ in 0..5 {
        let resp = login("wrong horse").await?;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    let resp = login("correct horse").await?;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.text().await?.contains("wait 15 minutes"));

    // The log says who tried, from where, and how it went.
    let log = site
        .api(Method::GET, "/audit?text=log%20in&limit=1000", None)
        .await?;
    let log = log.as_array().ok_or("list")?;
    assert_eq!(
        log.iter().filter(|e| e["result"] == "success").count(),
        1,
        "{log:?}"
    );
    assert!(log.iter().any(|e| e["detail"] == "too many failed logins"));
    assert!(log.iter().all(|e| e["source"] == "127.0.0.1"));
    Ok(())
}

#[tokio::test]
async fn the_audit_log_records_changes_and_commands_and_exports_them() -> Result {
    let site = Site::start().await?;
    let token = account_with(&site, "erin", &["Senior Helpdesk Administrator"]).await?;
    let (status, _) = call(
        &site,
        &token,
        "POST",
        "/users",
        Some(json!({ "email": "ann@example.com" })),
    )
    .await?;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = call(
        &site,
        &token,
        "POST",
        "/users/ann@example.com/activation-password",
        Some(json!({ "password": "s3cret-otp", "expires": "48h" })),
    )
    .await?;
    assert!(status.is_success());
    // No device yet: the command fails, and the log says so.
    let (status, _) = call(
        &site,
        &token,
        "POST",
        "/users/ann@example.com/commands",
        Some(json!({ "command": "lock", "new_password": "lockpass1" })),
    )
    .await?;
    assert_eq!(status, StatusCode::CONFLICT);

    let log = site.api(Method::GET, "/audit?actor=ERIN", None).await?;
    let log = log.as_array().ok_or("list")?;
    let actions: Vec<(&str, &str, &str)> = log
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or(""),
                e["target"].as_str().unwrap_or(""),
                e["result"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        actions,
        vec![
            ("Send IT admin command (lock)", "ann@example.com", "failed"),
            ("Set activation password", "ann@example.com", "success"),
            ("Add user", "ann@example.com", "success"),
        ]
    );
    // Never a secret.
    let all = serde_json::to_string(log)?;
    assert!(!all.contains("s3cret-otp") && !all.contains("lockpass1"));

    // Pages: the total and a link to the next page, with the filter kept.
    let resp = site
        .admin
        .get(format!("{}/api/v1/audit?actor=erin&limit=2", site.base))
        .bearer_auth(&site.token)
        .send()
        .await?;
    assert_eq!(resp.headers()["x-total-count"], "3");
    let link = resp.headers()["link"].to_str()?.to_owned();
    assert_eq!(
        link,
        "</api/v1/audit?actor=erin&offset=2&limit=2>; rel=\"next\""
    );
    let page: Vec<Value> = resp.json().await?;
    assert_eq!(page.len(), 2);

    // CSV export.
    let resp = site
        .admin
        .get(format!("{}/api/v1/audit?actor=erin&format=csv", site.base))
        .bearer_auth(&site.token)
        .send()
        .await?;
    assert!(
        resp.headers()["content-type"]
            .to_str()?
            .starts_with("text/csv")
    );
    let csv = resp.text().await?;
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("id,at,actor,source,action,target,detail,result,status")
    );
    assert_eq!(lines.count(), 3);
    assert!(csv.contains("erin,127.0.0.1,Add user,ann@example.com,,success,201"));
    Ok(())
}

#[tokio::test]
async fn errors_have_one_shape() -> Result {
    let site = Site::start().await?;
    // the framework's own refusals: a body that is not JSON, a method not taken
    let resp = site
        .admin
        .post(format!("{}/api/v1/groups", site.base))
        .bearer_auth(&site.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: Value = resp.json().await?;
    assert_eq!(v["error"]["code"], "bad_request", "{v}");
    let resp = site
        .admin
        .put(format!("{}/api/v1/groups", site.base))
        .bearer_auth(&site.token)
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let v: Value = resp.json().await?;
    assert_eq!(v["error"]["code"], "method_not_allowed", "{v}");
    Ok(())
}
