//! The policy service end to end with the device simulator on the embedded store: IT policies
//! resolved by user, group and Default, pushed when they change and reported on by each
//! device; every IT admin command carried out by the device with its receipt; software
//! configurations installing and removing applications.

use std::time::Duration;

use bramble_device::Device;
use bramble_server::ServerEvent;
use reqwest::Method;
use serde_json::{Value, json};

use crate::activation::Site;
use crate::mail::{activated, deliver, message, sync};
use crate::support::Result;

const IDLE: Duration = Duration::from_millis(1500);
const WITHIN: Duration = Duration::from_secs(20);

async fn site() -> Result<Site> {
    Site::start_with(
        |_| {},
        |s| {
            s.policy.retry_after = Duration::from_secs(3);
        },
    )
    .await
}

async fn post(site: &Site, path: &str, body: Value) -> Result<Value> {
    site.api(Method::POST, path, Some(body)).await
}

async fn put(site: &Site, path: &str, body: Value) -> Result<Value> {
    site.api(Method::PUT, path, Some(body)).await
}

/// Gives `email`'s device a command; its number.
async fn command(site: &Site, email: &str, body: Value) -> Result<i64> {
    let c = post(site, &format!("/users/{email}/commands"), body).await?;
    assert_eq!(c["state"], "queued", "{c}");
    c["id"]
        .as_i64()
        .ok_or_else(|| format!("no id in {c}").into())
}

/// Syncs the device until command `id` is in state `want` (the device answers during the
/// sync; the server records the answer just after).
pub(crate) async fn until_state(
    site: &Site,
    device: &mut Device,
    id: i64,
    want: &str,
) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let c = site
            .api(Method::GET, &format!("/commands/{id}"), None)
            .await?;
        if c["state"] == want {
            return Ok(c);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("command {id} is not {want}: {c}").into());
        }
        if device.server().is_some() {
            let store = device.mail_store().await?;
            sync(device, &store, Duration::from_millis(500)).await?;
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Syncs the device until the server's view of its policy satisfies `ok`.
async fn until_policy(
    site: &Site,
    device: &mut Device,
    email: &str,
    ok: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let store = device.mail_store().await?;
        sync(device, &store, IDLE).await?;
        let u = site.show(email).await?;
        if ok(&u["policy"]) {
            return Ok(u["policy"].clone());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{email}'s policy never got there: {}", u["policy"]).into());
        }
    }
}

#[tokio::test]
async fn a_policy_change_reaches_every_affected_device_and_each_reports_compliance() -> Result {
    let site = site().await?;
    let (alice, bob, carol) = ("alice@example.com", "bob@example.com", "carol@example.com");
    let mut a = activated(&site, alice, "alice-phone").await?;
    let mut b = activated(&site, bob, "bob-phone").await?;
    let mut c = activated(&site, carol, "carol-phone").await?;
    // at activation: the Default policy, applied
    let p = site.show(alice).await?["policy"].clone();
    assert_eq!(
        (p["policy"].as_str(), p["source"].as_str()),
        (Some("Default"), Some("default"))
    );
    assert_eq!(p["device"]["applied"], true, "{p}");

    post(&site, "/groups", json!({"name": "Sales"})).await?;
    for u in [alice, bob] {
        put(&site, &format!("/groups/Sales/members/{u}"), json!({})).await?;
    }
    post(
        &site,
        "/policies",
        json!({"name": "Sales Security", "from": "Basic Password Security"}),
    )
    .await?;
    put(
        &site,
        "/groups/Sales/policy",
        json!({"policy": "Sales Security"}),
    )
    .await?;

    for (d, email) in [(&mut a, alice), (&mut b, bob)] {
        let p = until_policy(&site, d, email, |p| {
            p["device"]["policy"] == "Sales Security" && p["device"]["applied"] == true
        })
        .await?;
        assert_eq!(p["source"], "group Sales", "{p}");
        let trace = p["trace"].as_array().ok_or("trace")?;
        assert!(
            trace
                .iter()
                .any(|t| t["source"] == "group Sales" && t["won"] == true),
            "{p}"
        );
        assert!(
            trace
                .iter()
                .any(|t| t["source"] == "default" && t["won"] == false),
            "{p}"
        );
        // the device holds it and says what keeps it from complying: no password
        assert_eq!(d.policy().map(|p| p.name.as_str()), Some("Sales Security"));
        assert_eq!(p["device"]["compliant"], false, "{p}");
        let problems = p["device"]["problems"].as_array().ok_or("problems")?;
        assert!(
            problems
                .iter()
                .any(|x| x.as_str().is_some_and(|s| s.contains("password"))),
            "{p}"
        );
    }
    // carol is in no group: still Default, nothing new sent
    let store = c.mail_store().await?;
    sync(&mut c, &store, IDLE).await?;
    assert_eq!(c.policy().map(|p| p.name.as_str()), Some("Default"));

    // a new version reaches both members
    let v = site
        .api(
            Method::PATCH,
            "/policies/Sales Security",
            Some(json!({"rules": {"password_min_length": "6"}, "note": "longer"})),
        )
        .await?;
    assert_eq!(v["version"], 2);
    for (d, email) in [(&mut a, alice), (&mut b, bob)] {
        until_policy(&site, d, email, |p| {
            p["device"]["version"] == 2 && p["device"]["applied"] == true
        })
        .await?;
        assert_eq!(d.policy().map(|p| p.version), Some(2));
    }
    let diff = site
        .api(
            Method::GET,
            "/policies/Sales Security/diff?from=1&to=2",
            None,
        )
        .await?;
    assert_eq!(diff["changes"][0]["rule"], "password_min_length", "{diff}");
    assert_eq!(
        (
            diff["changes"][0]["from"].as_str(),
            diff["changes"][0]["to"].as_str()
        ),
        (Some("4"), Some("6"))
    );

    // alice sets a password: her device reports compliance
    a.set_password("abc12345")?;
    let p = until_policy(&site, &mut a, alice, |p| p["device"]["compliant"] == true).await?;
    assert_eq!(p["device"]["problems"], json!([]));

    // a user's own assignment wins over the group's
    put(
        &site,
        &format!("/users/{alice}/policy"),
        json!({"policy": "Advanced Security"}),
    )
    .await?;
    let p = until_policy(&site, &mut a, alice, |p| {
        p["device"]["policy"] == "Advanced Security"
    })
    .await?;
    assert_eq!(p["source"], "user");
    site.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn lock_sets_the_password_and_really_locks() -> Result {
    let site = site().await?;
    let email = "lena@example.com";
    let mut d = activated(&site, email, "lena-phone").await?;
    let id = command(
        &site,
        email,
        json!({"command": "lock", "new_password": "Lock-Pw-42"}),
    )
    .await?;
    let c = until_state(&site, &mut d, id, "done").await?;
    let states: Vec<&str> = c["history"]
        .as_array()
        .ok_or("history")?
        .iter()
        .filter_map(|e| e["state"].as_str())
        .collect();
    assert_eq!(states, vec!["queued", "sent", "done"], "{c}");
    assert!(
        !c.to_string().contains("Lock-Pw-42"),
        "the receipt shows the password: {c}"
    );
    assert!(d.is_locked());
    assert!(d.unlock("not-it").is_err());
    assert!(d.is_locked());
    d.unlock("Lock-Pw-42")?;
    assert!(!d.is_locked());
    site.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_wipe_really_wipes_and_the_device_leaves_the_server() -> Result {
    let site = site().await?;
    let email = "will@example.com";
    let mut d = activated(&site, email, "will-phone").await?;
    let root = site.dir.path().join("mail");
    deliver(
        &root,
        email,
        "1.a.host",
        &message("x@y.test", email, "keep me", "hello"),
    )?;
    let store = d.mail_store().await?;
    let deadline = tokio::time::Instant::now() + WITHIN;
    while store.inbox().await?.is_empty() {
        sync(&mut d, &store, IDLE).await?;
        assert!(
            tokio::time::Instant::now() < deadline,
            "the mail never came"
        );
    }
    store.close().await;
    let home = site.dir.path().join("will-phone");
    assert!(home.join("mail.db").exists());

    let id = command(&site, email, json!({"command": "wipe"})).await?;
    until_state(&site, &mut d, id, "done").await?;
    assert!(
        !home.join("mail.db").exists(),
        "the mail store is still there"
    );
    assert!(d.server().is_none(), "the device is still bound");
    assert!(d.profile().is_none());
    assert!(
        site.server()
            .store()
            .device_for_user(email)
            .await?
            .is_none()
    );
    let u = site.show(email).await?;
    assert_eq!(u["status"], "Initializing", "{u}");
    site.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_delayed_wipe_waits_and_the_user_may_cancel_it_only_when_allowed() -> Result {
    let site = site().await?;
    let email = "dora@example.com";
    let mut d = activated(&site, email, "dora-phone").await?;
    let id = command(
        &site,
        email,
        json!({"command": "wipe", "delay_hours": 24, "user_may_cancel": true}),
    )
    .await?;
    let c = until_state(&site, &mut d, id, "pending").await?;
    assert!(
        c["detail"]
            .as_str()
            .is_some_and(|s| s.contains("carry it out at")),
        "{c}"
    );
    let wipe = d.scheduled_wipe().ok_or("no wipe scheduled")?;
    assert!(wipe.may_cancel);
    assert!(d.server().is_some(), "wiped too early");
    d.cancel_wipe()?;
    until_state(&site, &mut d, id, "cancelled").await?;
    assert!(d.scheduled_wipe().is_none());

    let id = command(&site, email, json!({"command": "wipe", "delay_hours": 2})).await?;
    until_state(&site, &mut d, id, "pending").await?;
    assert!(
        d.cancel_wipe().is_err(),
        "a wipe the user may not cancel was cancelled"
    );
    assert!(d.scheduled_wipe().is_some());
    site.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn removing_the_organizations_data_keeps_the_phones_own() -> Result {
    let site = site().await?;
    let email = "omar@example.com";
    let mut d = activated(&site, email, "omar-phone").await?;
    d.set_password("own-pw-123")?;
    let id = command(&site, email, json!({"command": "remove-org-data"})).await?;
    until_state(&site, &mut d, id, "done").await?;
    assert!(d.server().is_none());
    assert!(d.profile().is_none());
    assert!(!site.dir.path().join("omar-phone/mail.db").exists());
    assert!(d.status().relay.is_some(), "the relay settings went too");
    assert!(d.has_password(), "the phone's own password went too");
    assert!(
        site.server()
            .store()
            .device_for_user(email)
            .await?
            .is_none()
    );
    site.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_regenerated_key_works_and_the_old_one_is_refused() -> Result {
    let site = site().await?;
    let email = "kai@example.com";
    let d = activated(&site, email, "kai-phone").await?;
    let pin = d.pin();
    drop(d);
    // a copy of the phone as it is now, holding the current key
    let home = site.dir.path().join("kai-phone");
    let old = site.dir.path().join("kai-phone-old");
    copy_dir(&home, &old)?;
    let mut d = site.device("kai-phone")?;
    assert_eq!(d.key_generation(), 1);

    let id = command(&site, email, json!({"command": "regenerate-key"})).await?;
    let c = until_state(&site, &mut d, id, "done").await?;
    assert!(
        c["detail"]
            .as_str()
            .is_some_and(|s| s.contains("generation 2")),
        "{c}"
    );
    // the device switches when the server's first frame under the new key arrives
    let deadline = tokio::time::Instant::now() + WITHIN;
    while d.key_generation() != 2 {
        let store = d.mail_store().await?;
        sync(&mut d, &store, Duration::from_millis(500)).await?;
        assert!(
            tokio::time::Instant::now() < deadline,
            "the device kept the old key"
        );
    }
    let server_dev = site
        .server()
        .store()
        .device_for_user(email)
        .await?
        .ok_or("device")?;
    assert_eq!(server_dev.key_generation, 2);
    let mut conn = d.connect().await?;
    conn.ping("after rekey").await?;
    conn.close().await;
    drop(d);

    // the copy still holds the old key: the server refuses what it sends
    let mut events = site.server().events();
    let mut stale = Device::open(&old)?;
    let mut conn = stale.connect().await?;
    let pinged = tokio::time::timeout(Duration::from_secs(3), conn.ping("old key")).await;
    assert!(
        !matches!(pinged, Ok(Ok(_))),
        "a frame under the old key was answered"
    );
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(ServerEvent::Rejected { pin: p, .. })) if p == pin => break,
            Ok(_) => {}
            Err(_) => return Err("the server never refused the old key".into()),
        }
    }
    conn.close().await;
    site.shutdown().await;
    Ok(())
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> Result {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if entry.file_name() != "lock" {
            match std::fs::copy(entry.path(), target) {
                // An SQLite journal (-wal, -shm) of a store still open may go meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                other => {
                    other?;
                }
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn the_policy_and_the_service_books_are_sent_again_on_command() -> Result {
    let site = site().await?;
    let email = "rita@example.com";
    let mut d = activated(&site, email, "rita-phone").await?;
    let id = command(&site, email, json!({"command": "resend-policy"})).await?;
    let c = until_state(&site, &mut d, id, "done").await?;
    assert!(
        c["detail"].as_str().is_some_and(|s| s.contains("applied")),
        "{c}"
    );
    let id = command(&site, email, json!({"command": "resend-service-books"})).await?;
    let c = until_state(&site, &mut d, id, "done").await?;
    assert!(
        c["detail"].as_str().is_some_and(|s| s.contains("CMIME")),
        "{c}"
    );
    // a command for nobody's device, and nonsense, are refused in words
    let err = post(
        &site,
        "/users/rita@example.com/commands",
        json!({"command": "explode"}),
    )
    .await
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("400") && err.contains("lock, wipe"), "{err}");
    site.user("nobody@example.com", None).await?;
    let err = post(
        &site,
        "/users/nobody@example.com/commands",
        json!({"command": "lock"}),
    )
    .await
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("no activated device"), "{err}");
    site.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_software_configuration_installs_and_removes_applications() -> Result {
    let site = site().await?;
    let email = "sam@example.com";
    let mut d = activated(&site, email, "sam-phone").await?;
    // the phone user's own applications
    d.install_local_app("Game", "2.0", b"game bytes")?;
    d.install_local_app("Calc", "1.1", b"calc bytes")?;

    let notes: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(7919) % 256) as u8)
        .collect();
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/software/packages?name=Notes&version=1.0",
            site_base(&site)?
        ))
        .bearer_auth(site_token(&site)?)
        .header("content-type", "application/octet-stream")
        .body(notes.clone())
        .send()
        .await?;
    assert_eq!(resp.status(), 201, "{}", resp.text().await?);
    post(&site, "/software/configs", json!({"name": "Field apps"})).await?;
    put(
        &site,
        "/software/configs/Field apps/apps/Notes",
        json!({"version": "1.0", "disposition": "required"}),
    )
    .await?;
    put(
        &site,
        "/software/configs/Field apps/apps/Game",
        json!({"disposition": "not-permitted"}),
    )
    .await?;
    put(
        &site,
        &format!("/users/{email}/software"),
        json!({"config": "Field apps"}),
    )
    .await?;

    let job = until_job(&site, &mut d, email, 1).await?;
    assert_eq!(job["state"], "done", "{job}");
    let states: Vec<(String, String)> = job["apps"]
        .as_array()
        .ok_or("apps")?
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap_or("").to_owned(),
                a["state"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(
        states.contains(&("Notes".into(), "installed".into())),
        "{job}"
    );
    assert!(states.contains(&("Game".into(), "removed".into())), "{job}");
    assert!(
        states.contains(&("Calc".into(), "removed".into())),
        "unlisted apps stay: {job}"
    );
    let names: Vec<&str> = d.apps().iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, vec!["Notes"]);
    assert_eq!(
        d.app_package("Notes")?,
        notes,
        "the package on the phone is not the one uploaded"
    );

    // Notes no longer permitted: removed
    put(
        &site,
        "/software/configs/Field apps/apps/Notes",
        json!({"disposition": "not-permitted"}),
    )
    .await?;
    let job = until_job(&site, &mut d, email, 2).await?;
    assert_eq!(job["state"], "done", "{job}");
    assert!(d.apps().is_empty(), "{:?}", d.apps());
    site.shutdown().await;
    Ok(())
}

fn site_base(site: &Site) -> Result<String> {
    let file: Value =
        serde_json::from_slice(&std::fs::read(site.dir.path().join("server/admin.json"))?)?;
    Ok(file["url"].as_str().ok_or("url")?.to_owned())
}

fn site_token(site: &Site) -> Result<String> {
    let file: Value =
        serde_json::from_slice(&std::fs::read(site.dir.path().join("server/admin.json"))?)?;
    Ok(file["token"].as_str().ok_or("token")?.to_owned())
}

/// Syncs until `email` has `n` jobs and the newest is done or failed; the newest.
async fn until_job(site: &Site, d: &mut Device, email: &str, n: usize) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let store = d.mail_store().await?;
        sync(d, &store, IDLE).await?;
        let jobs = site
            .api(Method::GET, &format!("/software/jobs?user={email}"), None)
            .await?;
        let list = jobs.as_array().cloned().unwrap_or_default();
        if list.len() >= n && matches!(list[0]["state"].as_str(), Some("done" | "failed")) {
            return Ok(list[0].clone());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("job {n} of {email} never finished: {jobs}").into());
        }
    }
}

#[tokio::test]
async fn a_groups_software_configuration_reaches_its_members() -> Result {
    let site = site().await?;
    let email = "uma@example.com";
    let mut d = activated(&site, email, "uma-phone").await?;
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/software/packages?name=Maps&version=3.2",
            site_base(&site)?
        ))
        .bearer_auth(site_token(&site)?)
        .header("content-type", "application/octet-stream")
        .body(b"maps package".to_vec())
        .send()
        .await?;
    assert_eq!(resp.status(), 201, "{}", resp.text().await?);
    post(&site, "/software/configs", json!({"name": "Drivers"})).await?;
    put(
        &site,
        "/software/configs/Drivers/apps/Maps",
        json!({"version": "3.2", "disposition": "required"}),
    )
    .await?;
    post(&site, "/groups", json!({"name": "Fleet"})).await?;
    put(&site, &format!("/groups/Fleet/members/{email}"), json!({})).await?;
    // assigned to the group, not the user: the member's phone installs it
    put(
        &site,
        "/groups/Fleet/software",
        json!({"config": "Drivers"}),
    )
    .await?;
    let job = until_job(&site, &mut d, email, 1).await?;
    assert_eq!(job["state"], "done", "{job}");
    let names: Vec<&str> = d.apps().iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, vec!["Maps"]);
    assert_eq!(d.app_package("Maps")?, b"maps package");
    let group = site.api(Method::GET, "/groups/Fleet", None).await?;
    assert_eq!(group["software"], "Drivers", "{group}");
    site.shutdown().await;
    Ok(())
}
