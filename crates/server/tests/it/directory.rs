//! The directory import (BES: the MailStore service) against a real slapd: people are found by
//! name or address (hostile search text escaped), added as users (or existing users linked),
//! activated like any user, and kept in step by synchronization; a directory that is down or
//! refuses the bind is an error for the administrator, never a half-done change.

use std::time::Duration;

use bramble_testkit::ldap::{ADMIN_DN, ADMIN_PASSWORD, PEOPLE_DN};
use bramble_testkit::{LdapServer, Person};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::activation::{Site, opts};
use crate::support::Result;

fn people() -> Vec<Person> {
    vec![
        Person::new("alice", "Alice Example", "alice@example.test"),
        Person::new("bob", "Bob Example", "bob@example.test"),
        Person::new("carol", "Carol Example", "carol@example.test"),
        Person::new("zed", "Zed (Admin*)", "zed@example.test"),
    ]
}

/// `[server.directory]` for `ldap`, binding as its root account through a password file.
fn directory_config(
    ldap: &LdapServer,
    dir: &std::path::Path,
    password: &str,
    interval: &str,
) -> bramble_server::directory::DirectoryConfig {
    let file = dir.join("ldap-password");
    std::fs::write(&file, format!("{password}\n")).expect("writing the password file");
    serde_json::from_value(json!({
        "url": ldap.url(),
        "base_dn": PEOPLE_DN,
        "bind_dn": ADMIN_DN,
        "bind_password_file": file,
        "timeout": "5s",
        "sync_interval": interval,
    }))
    .expect("a directory configuration")
}

async fn site_with(ldap: &LdapServer, password: &str, interval: &str) -> Result<Site> {
    let secrets = tempfile::tempdir()?;
    let cfg = directory_config(ldap, secrets.path(), password, interval);
    Site::start_with(|_| {}, move |c| c.directory = Some(cfg)).await
}

/// `GET`/`POST` with the status, the `X-More-Results` header and the JSON body.
async fn call(
    site: &Site,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(StatusCode, Option<String>, Value)> {
    let mut req = site
        .admin
        .request(method, format!("{}/api/v1{path}", site.base))
        .bearer_auth(&site.token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let more = resp
        .headers()
        .get("x-more-results")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = resp.text().await?;
    Ok((
        status,
        more,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    ))
}

fn names(entries: &Value) -> Vec<String> {
    entries
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn people_are_found_added_activated_and_kept_in_step() -> Result {
    let ldap = LdapServer::start(&people())?;
    let site = site_with(&ldap, ADMIN_PASSWORD, "0s").await?;
    let alice_id = ldap.entry_uuid("alice").await?;
    let bob_id = ldap.entry_uuid("bob").await?;

    let (status, _, dir) = call(&site, Method::GET, "/directory", None).await?;
    assert_eq!(status, StatusCode::OK, "{dir}");
    assert_eq!(dir["configured"], true);
    assert_eq!(dir["base_dn"], PEOPLE_DN);

    // search by name or address, sorted by name, limited with a "more" flag
    let (status, more, found) =
        call(&site, Method::GET, "/directory/search?q=example", None).await?;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(
        names(&found),
        [
            "Alice Example",
            "Bob Example",
            "Carol Example",
            "Zed (Admin*)"
        ]
    );
    assert_eq!(more.as_deref(), Some("false"));
    let alice = &found[0];
    assert_eq!(alice["mail"], "alice@example.test");
    assert_eq!(alice["id"], alice_id.as_str());
    assert_eq!(alice["dn"], format!("uid=alice,{PEOPLE_DN}"));
    assert_eq!(alice["user"], Value::Null);
    let (_, more, found) = call(
        &site,
        Method::GET,
        "/directory/search?q=Example&limit=2",
        None,
    )
    .await?;
    assert_eq!(names(&found).len(), 2);
    assert_eq!(more.as_deref(), Some("true"));
    let (_, _, found) = call(&site, Method::GET, "/directory/search?q=carol%40", None).await?;
    assert_eq!(names(&found), ["Carol Example"]);

    // filter syntax in the search text is text: escaped, never a wider search or an error
    let (_, _, found) = call(&site, Method::GET, "/directory/search?q=(Admin*)", None).await?;
    assert_eq!(names(&found), ["Zed (Admin*)"]);
    let (_, _, found) = call(&site, Method::GET, "/directory/search?q=*", None).await?;
    assert_eq!(names(&found), ["Zed (Admin*)"], "a star is a star");
    for hostile in [")(uid=*", "*)(|(objectClass=*", "\\2a", "é\u{202e}"] {
        let q = percent_encode(hostile);
        let (status, _, found) = call(
            &site,
            Method::GET,
            &format!("/directory/search?q={q}"),
            None,
        )
        .await?;
        assert_eq!(status, StatusCode::OK, "{hostile}: {found}");
        assert!(names(&found).is_empty(), "{hostile} matched {found}");
    }
    let (status, _, err) = call(&site, Method::GET, "/directory/search?q=a%00b", None).await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    let long = "x".repeat(300);
    let (status, _, err) = call(
        &site,
        Method::GET,
        &format!("/directory/search?q={long}"),
        None,
    )
    .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");

    // bob is a user already, added by hand: search says so, the import links him
    site.user("bob@example.test", None).await?;
    let (_, _, found) = call(&site, Method::GET, "/directory/search?q=bob", None).await?;
    assert_eq!(found[0]["user"], "bob@example.test");
    let (status, _, report) = call(
        &site,
        Method::POST,
        "/directory/import",
        Some(json!({ "ids": [alice_id, bob_id, "no-such-entry"] })),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        report["added"][0]["email"], "alice@example.test",
        "{report}"
    );
    assert_eq!(report["added"][0]["display_name"], "Alice Example");
    assert_eq!(report["added"][0]["status"], "Initializing");
    assert_eq!(report["added"][0]["directory_id"], alice_id.as_str());
    assert_eq!(report["linked"], json!(["bob@example.test"]));
    assert_eq!(report["skipped"][0]["id"], "no-such-entry");
    let bob = site
        .api(Method::GET, "/users/bob@example.test", None)
        .await?;
    assert_eq!(bob["display_name"], "Bob Example");
    assert_eq!(bob["directory_id"], bob_id.as_str());

    // again: nothing twice
    let (_, _, report) = call(
        &site,
        Method::POST,
        "/directory/import",
        Some(json!({ "ids": [alice_id] })),
    )
    .await?;
    assert_eq!(report["added"], json!([]));
    let reason = report["skipped"][0]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("already the user alice@example.test"),
        "{report}"
    );
    let users = site.api(Method::GET, "/users", None).await?;
    assert_eq!(users.as_array().map(Vec::len), Some(2), "{users}");
    for bad in [
        json!({ "ids": [] }),
        json!({ "ids": vec!["x"; 101] }),
        json!({ "id": "x" }),
    ] {
        let (status, _, err) = call(&site, Method::POST, "/directory/import", Some(bad)).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    }

    // a user added from the directory activates like any other
    site.set_password("alice@example.test", "Directory-Pw-1", "48h")
        .await?;
    let mut phone = site.device("alice-phone")?;
    phone
        .activate("alice@example.test", "Directory-Pw-1", &opts(20), |_| {})
        .await?;
    let alice = site
        .api(Method::GET, "/users/alice@example.test", None)
        .await?;
    assert_eq!(alice["status"], "Completed", "{alice}");

    // the directory changes: a new name, a new address, an entry gone
    ldap.modify_person(
        "alice",
        &[("cn", "Alice Liddell"), ("mail", "liddell@example.test")],
    )
    .await?;
    ldap.delete_person("bob").await?;
    let (status, _, report) = call(&site, Method::POST, "/directory/sync", None).await?;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["checked"], 2);
    assert_eq!(report["renamed"][0]["email"], "alice@example.test");
    assert_eq!(report["renamed"][0]["from"], "Alice Example");
    assert_eq!(report["renamed"][0]["to"], "Alice Liddell");
    assert_eq!(report["readdressed"][0]["email"], "liddell@example.test");
    assert_eq!(report["readdressed"][0]["from"], "alice@example.test");
    assert_eq!(report["address_changed"], json!([]));
    assert_eq!(report["missing"], json!(["bob@example.test"]));
    let (status, _, _) = call(&site, Method::GET, "/users/alice@example.test", None).await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "the old address is gone");
    let alice = site
        .api(Method::GET, "/users/liddell@example.test", None)
        .await?;
    assert_eq!(alice["display_name"], "Alice Liddell");
    assert_eq!(alice["status"], "Completed", "the device stays");
    // the phone is sent its service books again, now naming the new address, and says so
    let cmds = site
        .api(Method::GET, "/commands?user=liddell@example.test", None)
        .await?;
    let books = cmds
        .as_array()
        .and_then(|c| c.iter().find(|c| c["command"] == "resend-service-books"))
        .and_then(|c| c["id"].as_i64())
        .ok_or_else(|| format!("no service books sent again: {cmds}"))?;
    let c = crate::policy::until_state(&site, &mut phone, books, "done").await?;
    assert!(
        c["detail"].as_str().is_some_and(|d| d.contains("CMIME")),
        "{c}"
    );
    site.api(Method::GET, "/users/bob@example.test", None)
        .await
        .map_err(|e| format!("bob is kept when his entry is gone: {e}"))?;
    let (_, _, dir) = call(&site, Method::GET, "/directory", None).await?;
    assert_eq!(dir["last_sync"]["renamed"][0]["to"], "Alice Liddell");

    // both are in the audit log, with what they did
    let audit = site.api(Method::GET, "/audit", None).await?;
    let text = audit.to_string();
    assert!(
        text.contains("added alice@example.test; linked bob@example.test; 1 left out"),
        "{text}"
    );
    assert!(
        text.contains(
            "2 checked, 1 renamed, 1 given their new address, 0 with a new address not \
             applied, 1 gone"
        ),
        "{text}"
    );
    let own = site
        .api(
            Method::GET,
            "/audit?actor=directory%20synchronization",
            None,
        )
        .await?;
    let own = own.as_array().ok_or("audit is a list")?;
    assert!(
        own.iter().any(|e| e["action"] == "Change user address"
            && e["target"] == "liddell@example.test"
            && e["detail"] == "address alice@example.test -> liddell@example.test"),
        "{own:?}"
    );
    assert!(own.iter().any(|e| e["action"] == "Rename user"), "{own:?}");

    // the directory goes down: an error that says so, nothing changed, the status shows it
    let mut ldap = ldap;
    ldap.kill();
    let (status, _, err) = call(&site, Method::POST, "/directory/sync", None).await?;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{err}");
    assert_eq!(err["error"]["code"], "directory_unavailable");
    let msg = err["error"]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("cannot be reached") && msg.contains(&ldap.url()),
        "{msg}"
    );
    let (status, _, err) = call(&site, Method::GET, "/directory/search?q=a", None).await?;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{err}");
    let alice = site
        .api(Method::GET, "/users/liddell@example.test", None)
        .await?;
    assert_eq!(alice["display_name"], "Alice Liddell");
    let status = site.api(Method::GET, "/status", None).await?;
    let component = status["components"]
        .as_array()
        .and_then(|c| {
            c.iter()
                .find(|c| c["name"] == "Directory (MailStore service)")
        })
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(component["state"], "down", "{status}");
    site.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn names_follow_the_directory_on_their_own() -> Result {
    let ldap = LdapServer::start(&people())?;
    let site = site_with(&ldap, ADMIN_PASSWORD, "1s").await?;
    let carol_id = ldap.entry_uuid("carol").await?;
    let (status, _, report) = call(
        &site,
        Method::POST,
        "/directory/import",
        Some(json!({ "ids": [carol_id] })),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{report}");
    ldap.modify_person("carol", &[("cn", "Carol Lewis")])
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let carol = site
            .api(Method::GET, "/users/carol@example.test", None)
            .await?;
        if carol["display_name"] == "Carol Lewis" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the periodic synchronization did not rename carol: {carol}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    site.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_wrong_bind_password_or_no_directory_is_explained() -> Result {
    let ldap = LdapServer::start(&people())?;
    let site = site_with(&ldap, "not-the-password", "0s").await?;
    let (status, _, err) = call(&site, Method::GET, "/directory/search?q=alice", None).await?;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{err}");
    let msg = err["error"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("refused the bind as cn=admin"), "{msg}");
    site.shutdown().await;

    let site = Site::start().await?;
    let (_, _, dir) = call(&site, Method::GET, "/directory", None).await?;
    assert_eq!(dir["configured"], false);
    for (method, path) in [
        (Method::GET, "/directory/search?q=a"),
        (Method::POST, "/directory/sync"),
    ] {
        let (status, _, err) = call(&site, method, path, None).await?;
        assert_eq!(status, StatusCode::CONFLICT, "{err}");
        assert_eq!(err["error"]["code"], "directory_not_configured");
    }
    let (status, _, err) = call(
        &site,
        Method::POST,
        "/directory/import",
        Some(json!({ "ids": ["x"] })),
    )
    .await?;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    site.shutdown().await;
    Ok(())
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn the_console_searches_the_directory_for_those_who_may_add_users() -> Result {
    use crate::console::{account, page, session};
    let mut ldap = LdapServer::start(&people())?;
    let site = site_with(&ldap, ADMIN_PASSWORD, "0s").await?;
    let alice_id = ldap.entry_uuid("alice").await?;
    site.user("bob@example.test", None).await?;
    account(&site, "sam", "Security-Pw-1", "Security Administrator").await?;
    account(&site, "jo", "Junior-Pw-1", "Junior Helpdesk Administrator").await?;
    let sam = session(&site, "sam", "Security-Pw-1").await?;
    let jo = session(&site, "jo", "Junior-Pw-1").await?;

    let (status, html) = page(&site, Some(&sam), "/console/users").await?;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("Add from the directory"), "{html}");
    assert!(!html.contains("Add the selected people"), "no search yet");
    let (status, html) = page(&site, Some(&sam), "/console/users?dq=example").await?;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(
        html.contains("data-api=\"POST /api/v1/directory/import\""),
        "{html}"
    );
    assert!(html.contains(&format!("value=\"{alice_id}\"")), "{html}");
    assert!(
        html.contains("Alice Example") && html.contains("Zed (Admin*)"),
        "{html}"
    );
    assert!(html.contains("already a user"), "bob is marked: {html}");
    // the entry's text is escaped into the page
    assert!(!html.contains("<Admin"), "{html}");

    // a Junior Helpdesk Administrator may not add users: no panel
    let (status, html) = page(&site, Some(&jo), "/console/users?dq=example").await?;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(!html.contains("Add from the directory"), "{html}");

    // the directory down: said on the page, the users still listed
    ldap.kill();
    let (status, html) = page(&site, Some(&sam), "/console/users?dq=alice").await?;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains("cannot be reached"), "{html}");
    assert!(html.contains("bob@example.test"), "{html}");
    site.shutdown().await;
    Ok(())
}
