//! The web console: every page renders for an administrator who may see it, shows only what
//! their roles allow, and sends a signed-out browser to the login page; and two loops in
//! headless Chromium (Debian's chromium over chromedriver). One: log in, add a user, set an
//! activation password, the phone activates with it, send a lock command, the phone locks,
//! and both changes are in the audit log. The other: upload an application, make a software
//! configuration, add the application to it, allow unlisted applications, remove the
//! application, delete the configuration; make a custom role, tick permissions, delete it;
//! delete an administrator; make an API token, use its secret against the API, revoke it.
//! Screenshots go to target/test-artifacts/console/.

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

/// Uploads a package to the application repository, as the server's own administrator.
async fn upload(site: &Site, name: &str, version: &str, bytes: &[u8]) -> Result {
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/software/packages", site.base))
        .query(&[("name", name), ("version", version)])
        .bearer_auth(&site.token)
        .header("content-type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .await?;
    let status = resp.status();
    assert_eq!(status, StatusCode::CREATED, "{}", resp.text().await?);
    Ok(())
}

/// The part of `html` from `start` to the first `end` after it (empty when `start` is not in it).
fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let Some(from) = html.find(start) else {
        return "";
    };
    let rest = &html[from..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
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
    account(&site, "eve", "Enterprise-Pw-1", "Enterprise Administrator").await?;
    upload(&site, "Notes", "1.0", b"notes package").await?;
    site.api(
        Method::POST,
        "/software/configs",
        Some(json!({ "name": "Field apps" })),
    )
    .await?;
    site.api(
        Method::PUT,
        "/software/configs/Field%20apps/apps/Notes",
        Some(json!({ "version": "1.0", "disposition": "required" })),
    )
    .await?;
    site.api(
        Method::PUT,
        "/software/configs/Field%20apps/apps/Games",
        Some(json!({ "disposition": "not-permitted" })),
    )
    .await?;
    site.api(
        Method::POST,
        "/roles",
        Some(json!({ "name": "Auditors", "description": "reads the log",
                     "permissions": ["audit.view"] })),
    )
    .await?;
    let token = site
        .api(
            Method::POST,
            "/tokens",
            Some(json!({ "name": "nightly report", "account": "sam" })),
        )
        .await?;
    let token_id = token["id"].as_i64().ok_or("no token id")?;
    let secret = token["token"].as_str().ok_or("no secret")?.to_owned();

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
        ("/console/software/Field%20apps", "Applications not listed"),
        ("/console/admins", "Junior Helpdesk Administrator"),
        ("/console/tokens", "nightly report"),
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

    // software: each configuration has its page, the repository takes uploads and deletes
    let (_, software) = page(&site, Some(&sam), "/console/software").await?;
    for want in [
        "href=\"/console/software/Field%20apps\"",
        "data-file=\"file\"",
        "data-api=\"POST /api/v1/software/packages?name={name}&amp;version={version}\"",
        "data-api=\"DELETE /api/v1/software/packages/Notes/1.0\"",
        "data-then=\"/console/software/{name}\"",
    ] {
        assert!(
            software.contains(want),
            "the software page lacks {want}: {software}"
        );
    }
    let (_, config) = page(&site, Some(&sam), "/console/software/Field%20apps").await?;
    let apps = between(&config, "id=\"apps\"", "</table>");
    for want in ["Notes", "1.0", "Required", "Games", "Not permitted"] {
        assert!(apps.contains(want), "the applications lack {want}: {apps}");
    }
    for want in [
        "data-api=\"DELETE /api/v1/software/configs/Field%20apps/apps/Notes\"",
        "data-api=\"DELETE /api/v1/software/configs/Field%20apps/apps/Games\"",
        "data-api=\"PUT /api/v1/software/configs/Field%20apps/apps/{app}\"",
        "<option value=\"not-permitted\">Not permitted</option>",
        "<datalist id=\"repository-names\"><option value=\"Notes\">",
        "data-body='{\"allow_unlisted\":true}'",
        "data-api=\"DELETE /api/v1/software/configs/Field%20apps\"",
        "<span class=\"badge warn\">not allowed</span>",
    ] {
        assert!(
            config.contains(want),
            "the configuration page lacks {want}: {config}"
        );
    }
    let (status, _) = page(&site, Some(&sam), "/console/software/Nothing").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // roles: a custom role's permissions are checkboxes, ticked as it has them; presets are read
    let (_, admins) = page(&site, Some(&sam), "/console/admins").await?;
    let auditors = between(&admins, "data-role=\"Auditors\"", "</tr>");
    for want in [
        "data-api=\"PATCH /api/v1/roles/Auditors\"",
        "data-api=\"DELETE /api/v1/roles/Auditors\"",
        "value=\"audit.view\" data-list checked> View and export the audit log",
        "value=\"policy.view\" data-list> View IT policies",
        "value=\"reads the log\" data-initial=\"reads the log\"",
    ] {
        assert!(
            auditors.contains(want),
            "the role Auditors lacks {want}: {auditors}"
        );
    }
    let preset = between(&admins, "data-role=\"Security Administrator\"", "</tr>");
    assert!(
        preset.contains("Manage administrator accounts and roles"),
        "{preset}"
    );
    assert!(preset.contains("cannot be changed"), "{preset}");
    assert!(
        !preset.contains("<form") && !preset.contains("DELETE"),
        "{preset}"
    );
    // administrators: any may be deleted but oneself and the server's own
    assert!(
        admins.contains("data-api=\"DELETE /api/v1/accounts/jo\""),
        "{admins}"
    );
    for own in ["sam", "admin"] {
        assert!(
            !admins.contains(&format!("data-api=\"DELETE /api/v1/accounts/{own}\"")),
            "{own} is offered for deletion: {admins}"
        );
    }
    // sam's own API tokens, never their secrets
    let tokens = between(&admins, "id=\"tokens\"", "</section>");
    assert!(tokens.contains("nightly report"), "{tokens}");
    assert!(
        tokens.contains(&format!("data-api=\"DELETE /api/v1/tokens/{token_id}\"")),
        "{tokens}"
    );
    assert!(
        tokens.contains("data-api=\"POST /api/v1/tokens\""),
        "{tokens}"
    );
    assert!(!admins.contains(&secret), "the page shows a token's secret");

    // a Junior Helpdesk administrator sees users, not administrators or the audit log
    let jo = session(&site, "jo", "Junior-Pw-1").await?;
    let (status, config) = page(&site, Some(&jo), "/console/software/Field%20apps").await?;
    assert_eq!(status, StatusCode::OK, "{config}");
    assert!(config.contains("Notes"), "{config}");
    for hidden in ["Add an application", "DELETE", "PATCH"] {
        assert!(!config.contains(hidden), "jo is offered {hidden}: {config}");
    }
    let (_, software) = page(&site, Some(&jo), "/console/software").await?;
    assert!(!software.contains("data-file"), "{software}");
    // their own API tokens: none yet, and nobody else's
    let (status, tokens) = page(&site, Some(&jo), "/console/tokens").await?;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert!(tokens.contains("You have no API tokens"), "{tokens}");
    assert!(!tokens.contains("nightly report"), "{tokens}");
    let (status, users) = page(&site, Some(&jo), "/console/users").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(!users.contains("href=\"/console/admins\""), "{users}");
    assert!(!users.contains("Add a user"), "{users}");
    let (status, admins) = page(&site, Some(&jo), "/console/admins").await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{admins}");
    assert!(admins.contains("Not allowed"), "{admins}");
    let (status, _) = page(&site, Some(&jo), "/console/users/nobody%40example.com").await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // an Enterprise Administrator views administrators and roles (BES: "can only view role
    // assignments") and is offered no change
    let eve = session(&site, "eve", "Enterprise-Pw-1").await?;
    let (status, admins) = page(&site, Some(&eve), "/console/admins").await?;
    assert_eq!(status, StatusCode::OK, "{admins}");
    assert!(
        admins.contains("Junior Helpdesk Administrator") && admins.contains(">jo<"),
        "{admins}"
    );
    for hidden in [
        "Add an administrator",
        "Create a custom role",
        "data-api=\"DELETE /api/v1/accounts",
        "data-api=\"PATCH /api/v1/roles",
        "Assign role",
    ] {
        assert!(
            !admins.contains(hidden),
            "eve is offered {hidden}: {admins}"
        );
    }
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
    let (browser, c, shots) = chromium("").await?;
    let result = drive(&site, &c, &shots).await;
    finish(&c, &shots, "", &result).await;
    drop(browser);
    site.shutdown().await;
    result
}

#[tokio::test]
async fn the_console_in_chromium_manages_software_roles_and_api_tokens() -> Result {
    let site = Site::start().await?;
    account(&site, "dana", "Console-Pw-88", "Security Administrator").await?;
    account(
        &site,
        "dave",
        "Leaving-Pw-1",
        "Junior Helpdesk Administrator",
    )
    .await?;
    let (browser, c, shots) = chromium("manage-").await?;
    let result = manage(&site, &c, &shots).await;
    finish(&c, &shots, "manage-", &result).await;
    drop(browser);
    site.shutdown().await;
    result
}

/// A chromedriver, a session in it, and the screenshot directory (stale failure files of
/// this test, named with `prefix`, removed).
async fn chromium(prefix: &str) -> Result<(Browser, Client, std::path::PathBuf)> {
    let browser = Browser::start()?;
    let shots = artifacts_dir("console")?;
    for stale in ["failure.png", "failure.html"] {
        let _ = std::fs::remove_file(shots.join(format!("{prefix}{stale}")));
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
    Ok((browser, c, shots))
}

/// Keeps what the browser showed when the test failed, and ends the session.
async fn finish(c: &Client, shots: &std::path::Path, prefix: &str, result: &Result) {
    if result.is_err() {
        if let Ok(png) = c.screenshot().await {
            let _ = std::fs::write(shots.join(format!("{prefix}failure.png")), png);
        }
        if let Ok(html) = c.source().await {
            let _ = std::fs::write(shots.join(format!("{prefix}failure.html")), html);
        }
    }
    let _ = c.clone().close().await;
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

/// Clicks `css`, answering yes if it asks "are you sure?", and waits until the page says
/// `want` in its message of success. The message shown before is cleared first, so that one
/// saying the same does not count (the answer to "are you sure?" is set again each time: a
/// reload forgets it).
async fn act(c: &Client, css: &str, want: &str) -> Result<String> {
    c.execute(
        "window.confirm = () => true; \
         const m = document.getElementById('message'); \
         if (m) { m.textContent = ''; m.className = ''; }",
        vec![],
    )
    .await?;
    click(c, css).await?;
    until_text(c, "#message.done", want).await
}

/// Waits until the browser is at a URL ending in `path`.
async fn until_at(c: &Client, path: &str) -> Result {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = c.current_url().await?;
        if now.as_str().ends_with(path) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("the browser is at {now}, not {path}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET /api/v1/me` with an API token: the status, and the account it speaks for.
async fn me_with(site: &Site, token: &str) -> Result<(StatusCode, serde_json::Value)> {
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/me", site.base))
        .bearer_auth(token)
        .send()
        .await?;
    let status = resp.status();
    let text = resp.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or_default()))
}

async fn manage(site: &Site, c: &Client, shots: &std::path::Path) -> Result {
    c.goto(&format!("{}/console/login", site.base)).await?;
    fill(c, "input[name=name]", "dana").await?;
    fill(c, "input[name=password]", "Console-Pw-88").await?;
    click(c, "form button[type=submit]").await?;
    until_text(c, "h1", "Dashboard").await?;

    // upload an application to the repository, from a file on this machine
    let package = tempfile::Builder::new()
        .prefix("notes-")
        .suffix(".cod")
        .tempfile()?;
    std::fs::write(package.path(), b"the Notes application, version 1.0")?;
    click(c, "nav a[href='/console/software']").await?;
    until_text(c, "h1", "Software configurations").await?;
    fill(c, "#upload input[name=name]", "Notes").await?;
    fill(c, "#upload input[name=version]", "1.0").await?;
    c.find(Locator::Css("#upload input[type=file]"))
        .await?
        .send_keys(&package.path().display().to_string())
        .await?;
    act(
        c,
        "#upload button",
        "Notes 1.0 added to the application repository",
    )
    .await?;
    until_text(c, "#repository table", "Notes").await?;
    let packages = site.api(Method::GET, "/software/packages", None).await?;
    assert_eq!(packages[0]["name"], "Notes", "{packages}");
    assert_eq!(packages[0]["size"], 34, "{packages}");
    shot(c, shots, "software.png").await?;

    // make a software configuration: to its page
    fill(
        c,
        "form[data-api='POST /api/v1/software/configs'] input[name=name]",
        "Field apps",
    )
    .await?;
    act(
        c,
        "form[data-api='POST /api/v1/software/configs'] button",
        "Software configuration created",
    )
    .await?;
    until_text(c, "h1", "Field apps").await?;
    until_text(c, "#unlisted", "not allowed").await?;

    // add the application, required
    fill(c, "#apps input[name=app]", "Notes").await?;
    fill(c, "#apps input[name=version]", "1.0").await?;
    click(
        c,
        "#apps form select[name=disposition] option[value=required]",
    )
    .await?;
    act(c, "#apps form button", "Application added to Field apps").await?;
    let apps = until_text(c, "#apps table", "Notes").await?;
    assert!(apps.contains("Required") && apps.contains("1.0"), "{apps}");
    let config = site
        .api(Method::GET, "/software/configs/Field%20apps", None)
        .await?;
    assert_eq!(
        config["apps"],
        json!([{ "name": "Notes", "version": "1.0", "disposition": "required" }]),
        "{config}"
    );
    // a required application that is not in the repository: said so, nothing changes
    fill(c, "#apps input[name=app]", "Maps").await?;
    fill(c, "#apps input[name=version]", "9.9").await?;
    c.execute("document.getElementById('message').className = '';", vec![])
        .await?;
    click(c, "#apps form button").await?;
    until_text(c, "#message.error", "no package Maps 9.9").await?;
    shot(c, shots, "software-config.png").await?;

    // allow applications not listed
    act(c, "#unlisted button", "Applications not listed are allowed").await?;
    let config = site
        .api(Method::GET, "/software/configs/Field%20apps", None)
        .await?;
    assert_eq!(config["allow_unlisted"], true, "{config}");

    // remove the application, then delete the configuration
    act(
        c,
        "#apps button[data-api^='DELETE']",
        "Notes removed from the software configuration",
    )
    .await?;
    until_text(c, "#apps table", "No applications").await?;
    let config = site
        .api(Method::GET, "/software/configs/Field%20apps", None)
        .await?;
    assert_eq!(config["apps"], json!([]), "{config}");
    act(
        c,
        "button[data-api='DELETE /api/v1/software/configs/Field%20apps']",
        "Software configuration deleted",
    )
    .await?;
    until_at(c, "/console/software").await?;
    let gone = site
        .api(Method::GET, "/software/configs/Field%20apps", None)
        .await;
    assert!(
        gone.as_ref().is_err_and(|e| e.to_string().contains("404")),
        "{gone:?}"
    );

    // a custom role: made with one permission, another ticked, saved
    click(c, "nav a[href='/console/admins']").await?;
    until_text(c, "h1", "Administrators and roles").await?;
    let create = "form[data-api='POST /api/v1/roles']";
    fill(c, &format!("{create} input[name=name]"), "Auditors").await?;
    click(c, &format!("{create} input[value='user.view']")).await?;
    act(c, &format!("{create} button[type=submit]"), "Role created").await?;
    let row = "tr[data-role='Auditors']";
    click(c, &format!("{row} summary")).await?;
    click(c, &format!("{row} input[value='audit.view']")).await?;
    shot(c, shots, "role-edit.png").await?;
    act(
        c,
        &format!("{row} button[type=submit]"),
        "Role Auditors changed",
    )
    .await?;
    let role = site.api(Method::GET, "/roles/Auditors", None).await?;
    let mut held: Vec<&str> = role["permissions"]
        .as_array()
        .ok_or("no permissions")?
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    held.sort_unstable();
    assert_eq!(held, ["audit.view", "user.view"], "{role}");
    // untick one, save: only the other is left
    click(c, &format!("{row} summary")).await?;
    click(c, &format!("{row} input[value='user.view']")).await?;
    act(
        c,
        &format!("{row} button[type=submit]"),
        "Role Auditors changed",
    )
    .await?;
    let role = site.api(Method::GET, "/roles/Auditors", None).await?;
    assert_eq!(role["permissions"], json!(["audit.view"]), "{role}");
    // and delete it
    click(c, &format!("{row} summary")).await?;
    act(c, &format!("{row} button.danger"), "Role Auditors deleted").await?;
    let gone = site.api(Method::GET, "/roles/Auditors", None).await;
    assert!(
        gone.as_ref().is_err_and(|e| e.to_string().contains("404")),
        "{gone:?}"
    );

    // delete an administrator
    act(
        c,
        "button[data-api='DELETE /api/v1/accounts/dave']",
        "Administrator dave deleted",
    )
    .await?;
    let accounts = site.api(Method::GET, "/accounts", None).await?;
    assert!(
        accounts
            .as_array()
            .is_some_and(|a| a.iter().all(|a| a["name"] != "dave")),
        "{accounts}"
    );

    // an API token: its secret shown once, and it works against the API
    fill(c, "#tokens input[name=name]", "report script").await?;
    let said = act(c, "#tokens form button", "API token report script made").await?;
    let secret = said
        .rsplit(' ')
        .next()
        .filter(|s| s.starts_with("bt_"))
        .ok_or_else(|| format!("no secret in {said:?}"))?
        .to_owned();
    shot(c, shots, "token-made.png").await?;
    let (status, me) = me_with(site, &secret).await?;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["account"], "dana", "{me}");
    assert_eq!(me["via"], "api-token", "{me}");
    c.refresh().await?;
    let listed = until_text(c, "#tokens table", "report script").await?;
    assert!(!listed.contains(&secret), "{listed}");
    assert!(
        !c.source().await?.contains(&secret),
        "the secret is shown again"
    );
    // revoke it, on the page for every administrator: it stops working
    click(c, "nav a[href='/console/tokens']").await?;
    until_text(c, "h1", "API tokens").await?;
    act(
        c,
        "#tokens button.danger",
        "API token report script revoked",
    )
    .await?;
    until_text(c, "#tokens table", "You have no API tokens").await?;
    let (status, _) = me_with(site, &secret).await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    shot(c, shots, "tokens.png").await?;

    // all of it in the audit log, by dana
    let log = site
        .api(Method::GET, "/audit?actor=dana&limit=100", None)
        .await?;
    let actions: Vec<&str> = log
        .as_array()
        .ok_or("no audit log")?
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for want in [
        "Add application",
        "Create software configuration",
        "Add application to software configuration",
        "Edit software configuration",
        "Remove application from software configuration",
        "Delete software configuration",
        "Create role",
        "Edit role",
        "Delete role",
        "Delete administrator",
        "Make API token",
        "Revoke API token",
    ] {
        assert!(
            actions.contains(&want),
            "the audit log lacks {want:?}: {actions:?}"
        );
    }
    Ok(())
}
