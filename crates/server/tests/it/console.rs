//! The web console: every page renders for an administrator who may see it, shows only what
//! their roles allow, and sends a signed-out browser to the login page; and the whole loop in
//! headless Chromium (Debian's chromium over chromedriver): log in, add a user, set an
//! activation password, the phone activates with it, send a lock command, the phone locks,
//! and both changes are in the audit log. Screenshots go to target/test-artifacts/console/.

use std::time::Duration;

use bramble_testkit::Browser;
use bramble_testkit::browser::artifacts_dir;
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::activation::{Site, opts};
use crate::support::Result;

/// How long the browser waits for something to appear.
const WAIT: Duration = Duration::from_secs(20);

pub(crate) async fn account(site: &Site, name: &str, password: &str, role: &str) -> Result {
    site.api(
        Method::POST,
        "/accounts",
        Some(json!({ "name": name, "password": password, "roles": [role],
                     "display_name": "Console Tester" })),
    )
    .await?;
    Ok(())
}

/// A session cookie for `name`, logged in through the API.
pub(crate) async fn session(site: &Site, name: &str, password: &str) -> Result<String> {
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/login", site.base))
        .json(&json!({ "name": name, "password": password }))
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .ok_or("no cookie")?;
    Ok(cookie.split(';').next().ok_or("cookie")?.to_owned())
}

pub(crate) async fn page(
    site: &Site,
    cookie: Option<&str>,
    path: &str,
) -> Result<(StatusCode, String)> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut req = client.get(format!("{}{path}", site.base));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = resp.text().await?;
    Ok((status, if body.is_empty() { location } else { body }))
}

#[tokio::test]
async fn every_page_renders_and_shows_only_what_the_role_allows() -> Result {
    let site = Site::start().await?;
    site.user("erin@example.com", None).await?;
    site.api(Method::POST, "/groups", Some(json!({ "name": "Sales" })))
        .await?;
    site.api(Method::PUT, "/groups/Sales/members/erin@example.com", None)
        .await?;
    site.api(
        Method::POST,
        "/policies",
        Some(json!({ "name": "Field <Staff>", "rules": { "password_required": "true" } })),
    )
    .await?;
    site.api(
        Method::PATCH,
        "/policies/Field%20%3CStaff%3E",
        Some(json!({ "rules": { "password_min_length": "8" }, "note": "longer passwords" })),
    )
    .await?;
    account(&site, "sam", "Security-Pw-1", "Security Administrator").await?;
    account(&site, "jo", "Junior-Pw-1", "Junior Helpdesk Administrator").await?;

    // signed out: to the login page, which renders
    let (status, to) = page(&site, None, "/console/users").await?;
    assert_eq!(status, StatusCode::SEE_OTHER, "{to}");
    assert_eq!(to, "/console/login");
    let (status, login) = page(&site, None, "/console/login").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(login.contains("data-api=\"POST /api/v1/login\""), "{login}");
    let (status, css) = page(&site, None, "/console/static/console.css").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(css.contains(".badge"));

    let sam = session(&site, "sam", "Security-Pw-1").await?;
    for (path, expect) in [
        ("/console", "Users by status"),
        ("/console/users", "erin@example.com"),
        (
            "/console/users?q=ERIN&status=Initializing",
            "erin@example.com",
        ),
        ("/console/users/erin%40example.com", "Status timeline"),
        ("/console/groups", "Sales"),
        ("/console/groups/Sales", "erin@example.com"),
        ("/console/policies", "Field &#60;Staff&#62;"),
        ("/console/policies/Field%20%3CStaff%3E", "longer passwords"),
        (
            "/console/policies/Field%20%3CStaff%3E?from=1&to=2",
            "password_min_length",
        ),
        ("/console/software", "Application repository"),
        ("/console/admins", "Junior Helpdesk Administrator"),
        ("/console/audit", "Create IT policy"),
        (
            "/console/audit?actor=admin&result=success&text=group",
            "Create group",
        ),
    ] {
        let (status, html) = page(&site, Some(&sam), path).await?;
        assert_eq!(status, StatusCode::OK, "{path}: {html}");
        assert!(
            html.contains(expect),
            "{path} does not show {expect:?}: {html}"
        );
        assert!(!html.contains("<Staff>"), "{path} does not escape: {html}");
    }
    let (_, dashboard) = page(&site, Some(&sam), "/console").await?;
    for component in [
        "Router (relay link)",
        "Configuration database",
        "Policy service",
    ] {
        assert!(dashboard.contains(component), "{dashboard}");
    }

    // a Junior Helpdesk administrator sees users, not administrators or the audit log
    let jo = session(&site, "jo", "Junior-Pw-1").await?;
    let (status, users) = page(&site, Some(&jo), "/console/users").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(!users.contains("href=\"/console/admins\""), "{users}");
    assert!(!users.contains("Add a user"), "{users}");
    let (status, admins) = page(&site, Some(&jo), "/console/admins").await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{admins}");
    assert!(admins.contains("Not allowed"), "{admins}");
    let (status, _) = page(&site, Some(&jo), "/console/users/nobody%40example.com").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    site.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn the_console_in_chromium_adds_a_user_activates_and_locks_and_audits() -> Result {
    let site = Site::start_with(
        |_| {},
        |s| {
            s.policy.retry_after = Duration::from_secs(3);
        },
    )
    .await?;
    account(&site, "carol", "Console-Pw-77", "Security Administrator").await?;
    let browser = Browser::start()?;
    let shots = artifacts_dir("console")?;
    for stale in ["failure.png", "failure.html"] {
        let _ = std::fs::remove_file(shots.join(stale));
    }
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(browser.capabilities())
        .connect(&browser.webdriver_url())
        .await
        .map_err(|e| {
            format!(
                "no Chromium session: {e}; chromedriver: {}",
                browser.log_text()
            )
        })?;
    let result = drive(&site, &c, &shots).await;
    if result.is_err() {
        if let Ok(png) = c.screenshot().await {
            let _ = std::fs::write(shots.join("failure.png"), png);
        }
        if let Ok(html) = c.source().await {
            let _ = std::fs::write(shots.join("failure.html"), html);
        }
    }
    let _ = c.close().await;
    site.shutdown().await;
    result
}

async fn shot(c: &Client, dir: &std::path::Path, name: &str) -> Result {
    std::fs::write(dir.join(name), c.screenshot().await?)?;
    Ok(())
}

/// Waits until the element's text contains `want`.
async fn until_text(c: &Client, css: &str, want: &str) -> Result<String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(e) = c.find(Locator::Css(css)).await
            && let Ok(t) = e.text().await
            && t.contains(want)
        {
            return Ok(t);
        }
        if tokio::time::Instant::now() > deadline {
            let now = match c.find(Locator::Css(css)).await {
                Ok(e) => e.text().await.unwrap_or_default(),
                Err(_) => "(not on the page)".into(),
            };
            return Err(format!("{css} never said {want:?}; it says {now:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn fill(c: &Client, css: &str, text: &str) -> Result {
    let e = c
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await?;
    e.clear().await?;
    e.send_keys(text).await?;
    Ok(())
}

async fn click(c: &Client, css: &str) -> Result {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await?
        .click()
        .await?;
    Ok(())
}

async fn drive(site: &Site, c: &Client, shots: &std::path::Path) -> Result {
    let email = "bob@example.com";
    c.goto(&format!("{}/console", site.base)).await?;
    // signed out: the login page; a wrong password is said so
    until_text(c, "h1", "Log in").await?;
    fill(c, "input[name=name]", "carol").await?;
    fill(c, "input[name=password]", "not-the-password").await?;
    click(c, "form button[type=submit]").await?;
    let said = until_text(c, "#message.error", "").await?;
    assert!(!said.is_empty());
    shot(c, shots, "login-refused.png").await?;
    fill(c, "input[name=password]", "Console-Pw-77").await?;
    click(c, "form button[type=submit]").await?;
    until_text(c, "h1", "Dashboard").await?;
    until_text(c, "header .who", "carol").await?;
    shot(c, shots, "dashboard.png").await?;

    // add a user by hand
    click(c, "nav a[href='/console/users']").await?;
    until_text(c, "h1", "Users").await?;
    fill(
        c,
        "form[data-api='POST /api/v1/users'] input[name=email]",
        email,
    )
    .await?;
    fill(
        c,
        "form[data-api='POST /api/v1/users'] input[name=display_name]",
        "Bob Example",
    )
    .await?;
    click(c, "form[data-api='POST /api/v1/users'] button").await?;
    until_text(c, "h1", email).await?;
    until_text(c, "#message.done", "User added").await?;

    // set an activation password
    fill(c, "#activation input[name=password]", "Act-Pw-2026").await?;
    click(c, "#activation button").await?;
    until_text(c, "#message.done", "Activation password set").await?;
    shot(c, shots, "user-password-set.png").await?;

    // the phone activates with it, over the relay, through the real activation path
    let mut phone = site.device("bob-phone")?;
    phone
        .activate(email, "Act-Pw-2026", &opts(30), |_| {})
        .await?;
    c.refresh().await?;
    until_text(c, "h1", "Completed").await?;

    // send a lock command that sets a new device password
    c.execute("window.confirm = () => true;", vec![]).await?;
    fill(c, "#commands input[name=new_password]", "Lock-Pw-42").await?;
    click(c, "#commands form button").await?;
    until_text(c, "#message.done", "queued").await?;
    shot(c, shots, "user-lock-sent.png").await?;
    let cmds = site
        .api(Method::GET, &format!("/commands?user={email}"), None)
        .await?;
    let id = cmds[0]["id"].as_i64().ok_or("no command")?;
    assert_eq!(cmds[0]["command"], "lock", "{cmds}");
    assert_eq!(cmds[0]["created_by"], "carol", "{cmds}");
    crate::policy::until_state(site, &mut phone, id, "done").await?;
    assert!(phone.is_locked(), "the phone did not lock");
    phone.unlock("Lock-Pw-42")?;

    // both in the audit log, by carol, from this machine
    click(c, "nav a[href='/console/audit']").await?;
    until_text(c, "h1", "Audit log").await?;
    let log = until_text(c, "table.audit", "Send IT admin command").await?;
    for want in [
        "Add user",
        "Set activation password",
        "Send IT admin command",
        "carol",
        email,
    ] {
        assert!(log.contains(want), "the audit log lacks {want:?}: {log}");
    }
    assert!(
        !log.contains("Act-Pw-2026") && !log.contains("Lock-Pw-42"),
        "{log}"
    );
    fill(c, "input[name=text]", "lock").await?;
    click(c, "form[action='/console/audit'] button").await?;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !c.current_url().await?.as_str().contains("text=lock") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the filter did not apply"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let filtered = until_text(c, "table.audit", "Send IT admin command").await?;
    assert!(!filtered.contains("Add user"), "{filtered}");
    shot(c, shots, "audit.png").await?;
    Ok(())
}
