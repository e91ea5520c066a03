//! The synchronization service end to end: a real Radicale (`bramble_testkit::DavServer`),
//! the server with `[server.sync]` pointing at it through its service account, and the device
//! simulator. Slow synchronization at activation (1,000 contacts and 500 events, merged with
//! the device's own), edits both ways, each conflict rule, malformed records reported without
//! stopping the rest, overwrite at activation, wireless backup restored onto a replacement
//! device, and 10,000 contacts.

use std::path::PathBuf;
use std::time::Duration;

use bramble_device::Device;
use bramble_device::activation::{ActivateOptions, OrganizerData};
use bramble_organizer::{Database, Fields};
use bramble_server::sync::dav::{DavAccount, DavClient, PutOutcome};
use bramble_testkit::DavServer;
use reqwest::Method;
use serde_json::{Value, json};

use crate::activation::Site;
use crate::mail::sync;
use crate::support::Result;

const WITHIN: Duration = Duration::from_secs(30);
const PW: &str = "Sync-Test-Pw-7";

struct World {
    dav: DavServer,
    site: Site,
}

async fn world() -> Result<World> {
    crate::support::init_logs();
    let dav = DavServer::start(&[])?;
    let url = dav.url();
    let (user, password) = dav.service_account();
    let (user, password) = (user.to_owned(), password.to_owned());
    let site = Site::start_with(
        |_| {},
        move |s| {
            s.sync.url = Some(url);
            s.sync.service_user = Some(user);
            s.sync.service_password = Some(password);
            s.sync.interval = Duration::from_millis(500);
            s.sync.retry_after = Duration::from_secs(5);
        },
    )
    .await?;
    Ok(World { dav, site })
}

/// The service account on `email`'s home.
async fn dav_client(w: &World, email: &str) -> Result<DavClient> {
    let (user, password) = w.dav.service_account();
    let account = DavAccount {
        url: w.dav.url(),
        username: user.to_owned(),
        password: password.to_owned(),
    };
    Ok(DavClient::connect(&account, Some(&format!("/{email}/"))).await?)
}

fn vcard(uid: &str, name: &str) -> String {
    format!(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{name}\r\nN:{name};;;;\r\n\
         EMAIL:{uid}@example.com\r\nEND:VCARD\r\n"
    )
}

fn vevent(uid: &str, summary: &str, day: u32) -> String {
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Bramble//tests//EN\r\nBEGIN:VEVENT\r\n\
         UID:{uid}\r\nDTSTAMP:20261101T000000Z\r\nDTSTART:202612{:02}T100000Z\r\n\
         DTEND:202612{:02}T110000Z\r\nSUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        day % 28 + 1,
        day % 28 + 1
    )
}

/// Puts records straight into Radicale's storage (as if another client had written them over
/// months): thousands in a blink, where PUTs take a minute per thousand here.
async fn seed(w: &World, email: &str, db: Database, items: &[(String, String)]) -> Result<String> {
    let client = dav_client(w, email).await?;
    let href = client.collection(db).await?;
    let folder: PathBuf = w
        .dav
        .dir()
        .join("collections/collection-root")
        .join(href.trim_matches('/'));
    if !folder.is_dir() {
        return Err(format!("no collection folder {}", folder.display()).into());
    }
    for (name, data) in items {
        std::fs::write(folder.join(name), data)?;
    }
    // Radicale reads and indexes files it did not write when the collection is next listed:
    // for thousands that first listing takes longer than a client's 30 s (it goes on
    // indexing after the client gave up). That is this setup's cost, not the slow sync's:
    // list until it answers, so the test measures what a server with its cache made does.
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        match client.changes(&href, None).await {
            Ok(c) if c.changed.len() >= items.len() => break,
            Ok(_) | Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Ok(c) => {
                return Err(format!(
                    "Radicale lists {} of {} records",
                    c.changed.len(),
                    items.len()
                )
                .into());
            }
            Err(e) => return Err(format!("Radicale did not list the seeded records: {e}").into()),
        }
    }
    Ok(href)
}

fn opts(organizer: OrganizerData) -> ActivateOptions {
    ActivateOptions {
        timeout: Duration::from_secs(60),
        organizer,
        ..ActivateOptions::default()
    }
}

async fn activate(w: &World, email: &str, device: &mut Device, organizer: OrganizerData) -> Result {
    w.site.set_password(email, PW, "48h").await?;
    device.activate(email, PW, &opts(organizer), |_| {}).await?;
    Ok(())
}

async fn sync_view(w: &World, email: &str) -> Result<Value> {
    w.site
        .api(
            Method::GET,
            &format!("/users/{email}/sync?problems=50"),
            None,
        )
        .await
}

/// Syncs the device until `ok` holds for the device's records of `db`.
async fn until_device(
    device: &mut Device,
    db: Database,
    what: &str,
    ok: impl Fn(&[bramble_device::OrganizerEntry]) -> bool,
) -> Result<Vec<bramble_device::OrganizerEntry>> {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let store = device.mail_store().await?;
        sync(device, &store, Duration::from_millis(700)).await?;
        let list = device.organizer().await?.list(db).await?;
        if ok(&list) {
            return Ok(list);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "gave up waiting for {what}: {} records on the device",
                list.len()
            )
            .into());
        }
    }
}

/// Waits until `ok` holds for the server's copy (fetched over CalDAV/CardDAV) of `db`.
async fn until_server(
    w: &World,
    email: &str,
    db: Database,
    what: &str,
    ok: impl Fn(&[(String, String)]) -> bool,
) -> Result<Vec<(String, String)>> {
    let client = dav_client(w, email).await?;
    let href = client.collection(db).await?;
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let listing = client.changes(&href, None).await?;
        let hrefs: Vec<String> = listing.changed.iter().map(|l| l.href.clone()).collect();
        let got: Vec<(String, String)> = client
            .fetch(db, &href, &hrefs)
            .await?
            .into_iter()
            .map(|f| (f.href, f.data))
            .collect();
        if ok(&got) {
            return Ok(got);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "gave up waiting for {what} on the server ({} records)",
                got.len()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn titled<'a>(
    list: &'a [bramble_device::OrganizerEntry],
    title: &str,
) -> Option<&'a bramble_device::OrganizerEntry> {
    list.iter().find(|e| e.summary.title == title)
}

fn fields(f: impl FnOnce(&mut Fields)) -> Fields {
    let mut x = Fields::default();
    f(&mut x);
    x
}

#[tokio::test]
async fn slow_sync_at_activation_merges_1000_contacts_and_500_events_then_edits_flow_both_ways()
-> Result {
    let w = world().await?;
    let email = "alice@example.com";
    w.site.user(email, None).await?;
    // On the organizer server: 1,000 contacts, one of them larger than a record may be,
    // and 500 events.
    let mut contacts: Vec<(String, String)> = (0..999)
        .map(|i| {
            (
                format!("c{i:04}.vcf"),
                vcard(&format!("c{i:04}"), &format!("Contact {i:04}")),
            )
        })
        .collect();
    let huge = format!(
        "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:huge\r\nFN:Huge\r\nNOTE:{}\r\nEND:VCARD\r\n",
        "x".repeat(300 * 1024)
    );
    contacts.push(("huge.vcf".into(), huge));
    seed(&w, email, Database::Contacts, &contacts).await?;
    let events: Vec<(String, String)> = (0..500)
        .map(|i| {
            (
                format!("e{i:04}.ics"),
                vevent(&format!("e{i:04}"), &format!("Event {i:04}"), i),
            )
        })
        .collect();
    seed(&w, email, Database::Calendar, &events).await?;

    // The phone already holds records of its own: one new contact, one the server has too
    // (with other content: the server's wins by default), one event.
    let mut phone = w.site.device("alice-phone")?;
    {
        let org = phone.organizer().await?;
        org.add(
            Database::Contacts,
            &fields(|f| f.title = Some("Phone Only".into())),
        )
        .await?;
        org.add_raw(Database::Contacts, &vcard("c0007", "Changed On The Phone"))
            .await?;
        org.add(
            Database::Calendar,
            &fields(|f| {
                f.title = Some("Dentist".into());
                f.start = Some("2026-12-03 08:00".into());
            }),
        )
        .await?;
    }
    let started = std::time::Instant::now();
    activate(&w, email, &mut phone, OrganizerData::Merge).await?;
    println!(
        "slow sync of 999 contacts and 500 events at activation: {:?}",
        started.elapsed()
    );

    let user = w
        .site
        .api(Method::GET, &format!("/users/{email}"), None)
        .await?;
    assert_eq!(user["status"], "Completed", "{user:#}");
    let org = phone.organizer().await?;
    let contacts = org.list(Database::Contacts).await?;
    assert_eq!(
        contacts.len(),
        1000,
        "999 from the server and the phone's own one"
    );
    assert!(titled(&contacts, "Phone Only").is_some());
    assert!(
        titled(&contacts, "Changed On The Phone").is_none(),
        "the server's copy wins by default"
    );
    assert!(titled(&contacts, "Contact 0007").is_some());
    let events = org.list(Database::Calendar).await?;
    assert_eq!(events.len(), 501);
    // The oversized one is reported, and did not stop the rest.
    let view = sync_view(&w, email).await?;
    let problems = view["problems"].as_array().cloned().unwrap_or_default();
    assert!(
        problems.iter().any(
            |p| p["item"].as_str().is_some_and(|i| i.contains("huge.vcf"))
                && p["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("more than"))
        ),
        "{view:#}\n{}",
        w.dav.log_tail()
    );
    // Nothing was deleted on the server; the phone's own records are there now.
    let on_server = until_server(
        &w,
        email,
        Database::Contacts,
        "the phone's contact",
        |all| all.iter().any(|(_, d)| d.contains("Phone Only")),
    )
    .await?;
    assert_eq!(
        on_server.len(),
        1001,
        "999 + the huge one + the phone's own"
    );
    until_server(&w, email, Database::Calendar, "the dentist", |all| {
        all.len() == 501 && all.iter().any(|(_, d)| d.contains("Dentist"))
    })
    .await?;

    // A change on the phone reaches the server at once.
    let dentist = titled(&events, "Dentist")
        .map(|e| e.uid.clone())
        .ok_or("no dentist")?;
    org.edit(
        Database::Calendar,
        &dentist,
        &fields(|f| f.location = Some("Main Street 4".into())),
    )
    .await?;
    let store = phone.mail_store().await?;
    let mut conn = phone.connect().await?;
    let t = std::time::Instant::now();
    // Sent, written to the organizer server, and answered.
    let report =
        bramble_device::mail::wait_for_organizer(&mut conn, &store, Duration::from_secs(5)).await?;
    let took = t.elapsed();
    conn.close().await;
    assert_eq!(report.organizer_sent, 1, "{report:?}");
    println!("device change stored on the organizer server and answered after {took:?}");
    until_server(
        &w,
        email,
        Database::Calendar,
        "the dentist's new place",
        |all| all.iter().any(|(_, d)| d.contains("Main Street 4")),
    )
    .await?;

    // A change on the server reaches the phone within the interval.
    let client = dav_client(&w, email).await?;
    let href = client.collection(Database::Contacts).await?;
    let listing = client.changes(&href, None).await?;
    let c0001 = listing
        .changed
        .iter()
        .find(|l| l.href.ends_with("c0001.vcf"))
        .ok_or("no c0001")?;
    let stored = client
        .update(
            Database::Contacts,
            &c0001.href,
            &vcard("c0001", "Renamed On The Server"),
            &c0001.etag,
        )
        .await?;
    assert!(matches!(stored, PutOutcome::Stored { .. }), "{stored:?}");
    until_device(&mut phone, Database::Contacts, "the server's rename", |l| {
        titled(l, "Renamed On The Server").is_some()
    })
    .await?;
    // And a deletion there too.
    let c0002 = listing
        .changed
        .iter()
        .find(|l| l.href.ends_with("c0002.vcf"))
        .ok_or("no c0002")?;
    client.delete(&c0002.href, Some(&c0002.etag)).await?;
    until_device(
        &mut phone,
        Database::Contacts,
        "the server's deletion",
        |l| titled(l, "Contact 0002").is_none(),
    )
    .await?;
    // A deletion on the phone reaches the server.
    let c0003 = titled(&org.list(Database::Contacts).await?, "Contact 0003")
        .map(|e| e.uid.clone())
        .ok_or("no c0003")?;
    org.delete(Database::Contacts, &c0003).await?;
    let store = phone.mail_store().await?;
    sync(&mut phone, &store, Duration::from_millis(300)).await?;
    until_server(
        &w,
        email,
        Database::Contacts,
        "the phone's deletion",
        |all| !all.iter().any(|(h, _)| h.ends_with("c0003.vcf")),
    )
    .await?;
    Ok(())
}

/// Changes the same contact on both sides, then syncs; the title the phone ends with and
/// the one the server ends with.
async fn both_change(
    w: &World,
    email: &str,
    phone: &mut Device,
    uid: &str,
    phone_title: &str,
    server_title: &str,
    server_first: bool,
) -> Result<(String, String)> {
    let client = dav_client(w, email).await?;
    let href = client.collection(Database::Contacts).await?;
    let server_edit = || async {
        let listing = client.changes(&href, None).await?;
        let l = listing
            .changed
            .iter()
            .find(|l| l.href.contains(uid))
            .ok_or("the contact is not on the server")?;
        client
            .update(
                Database::Contacts,
                &l.href,
                &vcard(uid, server_title),
                &l.etag,
            )
            .await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    };
    if server_first {
        server_edit().await?;
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let org = phone.organizer().await?;
    org.edit(
        Database::Contacts,
        uid,
        &fields(|f| f.title = Some(phone_title.into())),
    )
    .await?;
    if !server_first {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        server_edit().await?;
    }
    // The phone's change goes out while the server's one is not on the phone yet.
    let store = phone.mail_store().await?;
    sync(phone, &store, Duration::from_millis(1500)).await?;
    sync(phone, &store, Duration::from_millis(1500)).await?;
    let on_phone = org.get(Database::Contacts, uid).await?.summary.title;
    let on_server = client
        .fetch(
            Database::Contacts,
            &href,
            &client
                .changes(&href, None)
                .await?
                .changed
                .iter()
                .filter(|l| l.href.contains(uid))
                .map(|l| l.href.clone())
                .collect::<Vec<_>>(),
        )
        .await?
        .into_iter()
        .next()
        .and_then(|f| bramble_organizer::parse(Database::Contacts, &f.data).ok())
        .map(|r| r.summary.title)
        .unwrap_or_default();
    Ok((on_phone, on_server))
}

#[tokio::test]
async fn each_conflict_rule_settles_a_record_changed_on_both_sides() -> Result {
    let w = world().await?;
    let email = "carol@example.com";
    w.site.user(email, None).await?;
    let items: Vec<(String, String)> = (0..3)
        .map(|i| {
            (
                format!("k{i}.vcf"),
                vcard(&format!("k{i}"), &format!("Original {i}")),
            )
        })
        .collect();
    seed(&w, email, Database::Contacts, &items).await?;
    let mut phone = w.site.device("carol-phone")?;
    activate(&w, email, &mut phone, OrganizerData::Merge).await?;
    let set = |rule: &'static str| {
        let site = &w.site;
        async move {
            site.api(
                Method::PUT,
                &format!("/users/{email}/sync/contacts"),
                Some(json!({ "conflict": rule })),
            )
            .await
        }
    };

    // server wins (the default)
    let (p, s) = both_change(&w, email, &mut phone, "k0", "Phone 0", "Server 0", false).await?;
    assert_eq!(
        (p.as_str(), s.as_str()),
        ("Server 0", "Server 0"),
        "server-wins"
    );
    // device wins
    let v = set("device-wins").await?;
    assert_eq!(v["databases"][1]["conflict"], "device-wins", "{v:#}");
    assert_eq!(v["databases"][1]["source"], "user", "{v:#}");
    let (p, s) = both_change(&w, email, &mut phone, "k1", "Phone 1", "Server 1", false).await?;
    assert_eq!(
        (p.as_str(), s.as_str()),
        ("Phone 1", "Phone 1"),
        "device-wins"
    );
    // newest wins: the server changed it after the phone did
    set("newest-wins").await?;
    let (p, s) = both_change(&w, email, &mut phone, "k2", "Phone 2", "Server 2", false).await?;
    assert_eq!(
        (p.as_str(), s.as_str()),
        ("Server 2", "Server 2"),
        "newest-wins, server later"
    );
    // … and the phone after the server
    let (p, s) = both_change(&w, email, &mut phone, "k2", "Phone 2b", "Server 2b", true).await?;
    assert_eq!(
        (p.as_str(), s.as_str()),
        ("Phone 2b", "Phone 2b"),
        "newest-wins, phone later"
    );
    Ok(())
}

#[tokio::test]
async fn a_replacement_device_gets_the_backup_and_overwrite_drops_what_it_held() -> Result {
    let w = world().await?;
    let email = "dave@example.com";
    w.site.user(email, None).await?;
    seed(
        &w,
        email,
        Database::Contacts,
        &[("z1.vcf".into(), vcard("z1", "Zed One"))],
    )
    .await?;
    let mut old = w.site.device("dave-old")?;
    activate(&w, email, &mut old, OrganizerData::Merge).await?;
    old.set_option("ringtone", "Antelope")?;
    old.set_option("signature", "Sent from my Bramble")?;
    let store = old.mail_store().await?;
    sync(&mut old, &store, Duration::from_millis(500)).await?;
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let v = sync_view(&w, email).await?;
        if v["last_backup"].is_object() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("no backup reached the server: {v:#}").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The replacement holds an option and a contact of its own; the user overwrites.
    let mut new = w.site.device("dave-new")?;
    new.set_option("ringtone", "Factory Default")?;
    new.organizer()
        .await?
        .add(
            Database::Contacts,
            &fields(|f| f.title = Some("Left Behind".into())),
        )
        .await?;
    activate(&w, email, &mut new, OrganizerData::Overwrite).await?;
    let contacts = new.organizer().await?.list(Database::Contacts).await?;
    let titles: Vec<&str> = contacts.iter().map(|c| c.summary.title.as_str()).collect();
    assert_eq!(titles, ["Zed One"], "overwrite: the server's data only");
    assert_eq!(
        new.options().get("ringtone").map(String::as_str),
        Some("Antelope")
    );
    assert_eq!(
        new.options().get("signature").map(String::as_str),
        Some("Sent from my Bramble")
    );
    // Nothing of the replacement's own went to the server.
    let on_server = until_server(&w, email, Database::Contacts, "one contact", |all| {
        all.len() == 1
    })
    .await?;
    assert!(on_server[0].1.contains("Zed One"));
    Ok(())
}

#[tokio::test]
async fn ten_thousand_contacts_reach_the_device() -> Result {
    let logs = crate::support::init_logs();
    let w = world().await?;
    let email = "erin@example.com";
    w.site.user(email, None).await?;
    let items: Vec<(String, String)> = (0..10_000)
        .map(|i| {
            (
                format!("t{i:05}.vcf"),
                vcard(&format!("t{i:05}"), &format!("Person {i:05}")),
            )
        })
        .collect();
    seed(&w, email, Database::Contacts, &items).await?;
    let mut phone = w.site.device("erin-phone")?;
    let t = std::time::Instant::now();
    activate(&w, email, &mut phone, OrganizerData::Merge).await?;
    println!("slow sync of 10,000 contacts: {:?}", t.elapsed());
    let n = phone
        .organizer()
        .await?
        .list(Database::Contacts)
        .await?
        .len();
    if n != 10_000 {
        // Say how the activation went: its timeline, the server's view, and what the server
        // logged about this user's activation and synchronization.
        let user = w
            .site
            .api(Method::GET, &format!("/users/{email}"), None)
            .await?;
        let logged = String::from_utf8_lossy(&logs.lock().map(|l| l.clone()).unwrap_or_default())
            .lines()
            .filter(|l| l.contains(email) && !l.contains("TRACE"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
            .join("\n");
        return Err(format!(
            "{n} of 10,000 contacts on the device after the activation\n\
             timeline: {:#}\nsync: {:#}\nlogged:\n{logged}",
            user["history"],
            sync_view(&w, email).await?
        )
        .into());
    }
    // The server hears the device holds every one (its answers arrive just after).
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let v = sync_view(&w, email).await?;
        let contacts = v["records"]
            .as_array()
            .and_then(|r| r.iter().find(|x| x["database"] == "contacts"))
            .cloned()
            .unwrap_or_default();
        if contacts["on_server"] == 10_000 && contacts["on_device"] == 10_000 {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(
                format!("the server does not know the device holds them all: {contacts}").into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Without a service account each user logs in to the organizer server with their own
/// address and the password kept for them; a group's setting applies to its members.
#[tokio::test]
async fn per_user_credentials_and_a_group_setting() -> Result {
    crate::support::init_logs();
    let email = "frank@example.com";
    let dav = DavServer::start(&[(email, "frank-dav-pw")])?;
    let url = dav.url();
    let site = Site::start_with(
        |_| {},
        move |s| {
            s.sync.url = Some(url);
            s.sync.interval = Duration::from_millis(500);
        },
    )
    .await?;
    site.user(email, None).await?;
    site.api(
        Method::PUT,
        &format!("/users/{email}/mail-password"),
        Some(json!({ "password": "frank-dav-pw" })),
    )
    .await?;
    site.api(Method::POST, "/groups", Some(json!({ "name": "Field" })))
        .await?;
    site.api(Method::PUT, &format!("/groups/Field/members/{email}"), None)
        .await?;
    let g = site
        .api(
            Method::PUT,
            "/groups/Field/sync/memos",
            Some(json!({ "enabled": false })),
        )
        .await?;
    assert_eq!(g["databases"][0]["database"], "memos", "{g:#}");
    let v = site
        .api(Method::GET, &format!("/users/{email}/sync"), None)
        .await?;
    let memos = &v["databases"][3];
    assert_eq!(memos["enabled"], false, "{v:#}");
    assert_eq!(memos["source"], "group Field", "{v:#}");

    let mut phone = site.device("frank-phone")?;
    phone
        .organizer()
        .await?
        .add(
            Database::Contacts,
            &fields(|f| f.title = Some("Own Contact".into())),
        )
        .await?;
    site.set_password(email, PW, "48h").await?;
    phone
        .activate(email, PW, &opts(OrganizerData::Merge), |_| {})
        .await?;
    // The phone's contact is on the organizer server, in frank's own address book.
    let account = DavAccount {
        url: dav.url(),
        username: email.to_owned(),
        password: "frank-dav-pw".to_owned(),
    };
    let client = DavClient::connect(&account, None).await?;
    let href = client.collection(Database::Contacts).await?;
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let listing = client.changes(&href, None).await?;
        if listing.changed.len() == 1 {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("frank's contact is not on the server: {listing:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Memos are off for the group: a memo stays on the phone.
    let config = phone
        .organizer()
        .await?
        .sync_config()
        .await?
        .ok_or("no configuration")?;
    assert!(
        !config.sent().contains(&Database::Memos),
        "memos are off: {config:?}"
    );
    Ok(())
}
