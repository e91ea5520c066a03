//! The synchronization service's CalDAV/CardDAV client against a real Radicale
//! (`bramble_testkit::DavServer`), as a user and as the service account.

use std::time::Instant;

use bramble_server::sync::dav::{
    Changes, Database, DavAccount, DavClient, DavError, DeleteOutcome, PutOutcome,
};
use bramble_testkit::DavServer;
use futures::StreamExt as _;

const ALICE: (&str, &str) = ("alice@example.test", "alicepw");
const BOB: (&str, &str) = ("bob@example.test", "bobpw");

fn start() -> DavServer {
    DavServer::start(&[ALICE, BOB]).expect("starting Radicale")
}

fn account(server: &DavServer, (username, password): (&str, &str)) -> DavAccount {
    DavAccount {
        url: server.url(),
        username: username.to_owned(),
        password: password.to_owned(),
    }
}

/// As the user (discovery), or as the service account on `home`.
async fn connect(server: &DavServer, who: (&str, &str), home: Option<&str>) -> DavClient {
    match DavClient::connect(&account(server, who), home).await {
        Ok(client) => client,
        Err(e) => panic!("connecting as {}: {e}\n{}", who.0, server.log_tail()),
    }
}

async fn service_on(server: &DavServer, email: &str) -> DavClient {
    let home = format!("/{email}/");
    connect(server, server.service_account(), Some(&home)).await
}

fn vcard(uid: &str, name: &str) -> String {
    format!("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{name}\r\nN:{name};;;;\r\nEND:VCARD\r\n")
}

fn ical(component: &str, uid: &str, summary: &str) -> String {
    let times = if component == "VEVENT" {
        "DTSTART:20260102T100000Z\r\nDTEND:20260102T110000Z\r\n"
    } else {
        ""
    };
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Bramble//tests//EN\r\nBEGIN:{component}\r\n\
         UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\n{times}SUMMARY:{summary}\r\nEND:{component}\r\n\
         END:VCALENDAR\r\n"
    )
}

fn stored(outcome: Result<PutOutcome, DavError>, what: &str) -> (String, String) {
    match outcome {
        Ok(PutOutcome::Stored { href, etag }) => (href, etag),
        other => panic!("{what}: {other:?}"),
    }
}

async fn collections(client: &DavClient) -> Vec<String> {
    let mut hrefs = Vec::new();
    for db in Database::ALL {
        hrefs.push(client.collection(db).await.expect("finding the collection"));
    }
    hrefs
}

async fn check_collections(server: &DavServer, first: DavClient, again: DavClient, home: &str) {
    let hrefs = collections(&first).await;
    for (db, href) in Database::ALL.iter().zip(&hrefs) {
        assert_eq!(href, &format!("{home}{}/", db.as_str()));
    }
    // found again, not created twice (a second MKCOL on the same path would fail)
    assert_eq!(collections(&again).await, hrefs, "{}", server.log_tail());
    assert_eq!(collections(&first).await, hrefs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_per_database_is_created_once() {
    let server = start();
    let alice = connect(&server, ALICE, None).await;
    let alice_again = connect(&server, ALICE, None).await;
    check_collections(&server, alice, alice_again, "/alice@example.test/").await;

    // bob never logged in: the service account creates his home too
    let bob = service_on(&server, BOB.0).await;
    let bob_again = service_on(&server, BOB.0).await;
    check_collections(&server, bob, bob_again, "/bob@example.test/").await;
    // and bob, logging in himself later, finds the same ones
    let bob_himself = connect(&server, BOB, None).await;
    assert_eq!(
        collections(&bob_himself).await,
        Database::ALL.map(|db| format!("/bob@example.test/{}/", db.as_str()))
    );
}

/// Create, list, update, conflict, delete, list the changes, fetch, a bad token.
async fn contacts_round_trip(server: &DavServer, client: &DavClient) {
    let book = client
        .collection(Database::Contacts)
        .await
        .expect("the address book");
    let mut cards = Vec::new();
    for (uid, name) in [
        ("c1", "Ann One"),
        ("c2", "Ben Two"),
        ("c3@odd uid", "Cat Three"),
    ] {
        let outcome = client
            .create(
                Database::Contacts,
                &book,
                &format!("{uid}.vcf"),
                &vcard(uid, name),
            )
            .await;
        cards.push(stored(outcome, "creating a contact"));
    }
    assert!(cards[2].0.ends_with("/c3@odd%20uid.vcf") || cards[2].0.ends_with("/c3@odd uid.vcf"));
    let again = client
        .create(
            Database::Contacts,
            &book,
            "c1.vcf",
            &vcard("c1", "Ann Again"),
        )
        .await;
    assert_eq!(again.ok(), Some(PutOutcome::Conflict), "creating c1 twice");

    let all = client
        .changes(&book, None)
        .await
        .expect("listing the contacts");
    let mut listed: Vec<(String, String)> = all
        .changed
        .iter()
        .map(|l| (l.href.clone(), l.etag.clone()))
        .collect();
    listed.sort();
    let mut expected = cards.clone();
    expected.sort();
    assert_eq!(listed, expected, "{}", server.log_tail());
    assert!(all.deleted.is_empty());
    assert!(!all.token.is_empty());

    // update with the right etag, then with the stale one
    let (href, old_etag) = cards[0].clone();
    let (updated_href, new_etag) = stored(
        client
            .update(
                Database::Contacts,
                &href,
                &vcard("c1", "Ann Renamed"),
                &old_etag,
            )
            .await,
        "updating c1",
    );
    assert_eq!(updated_href, href);
    assert_ne!(new_etag, old_etag);
    let stale = client
        .update(
            Database::Contacts,
            &href,
            &vcard("c1", "Ann Lost"),
            &old_etag,
        )
        .await;
    assert_eq!(
        stale.ok(),
        Some(PutOutcome::Conflict),
        "updating with a stale etag"
    );

    // delete: a stale etag is refused, the right one works, then it is gone
    let (gone_href, gone_etag) = cards[1].clone();
    let refused = client.delete(&gone_href, Some(&old_etag)).await;
    assert_eq!(refused.ok(), Some(DeleteOutcome::Conflict));
    let deleted = client.delete(&gone_href, Some(&gone_etag)).await;
    assert_eq!(deleted.ok(), Some(DeleteOutcome::Deleted));
    let again = client.delete(&gone_href, None).await;
    assert_eq!(again.ok(), Some(DeleteOutcome::Gone));

    let Changes {
        token,
        changed,
        deleted,
    } = client
        .changes(&book, Some(&all.token))
        .await
        .expect("listing the changes");
    let changed: Vec<(String, String)> = changed.into_iter().map(|l| (l.href, l.etag)).collect();
    assert_eq!(changed, [(href.clone(), new_etag.clone())]);
    assert_eq!(deleted, std::slice::from_ref(&gone_href));
    assert_ne!(token, all.token);
    let nothing = client
        .changes(&book, Some(&token))
        .await
        .expect("listing no changes");
    assert!(nothing.changed.is_empty() && nothing.deleted.is_empty());

    let hrefs: Vec<String> = cards.iter().map(|(href, _)| href.clone()).collect();
    let mut fetched = client
        .fetch(Database::Contacts, &book, &hrefs)
        .await
        .expect("fetching");
    fetched.sort_by(|a, b| a.href.cmp(&b.href));
    assert_eq!(fetched.len(), 2, "the deleted one is left out: {fetched:?}");
    assert_eq!(fetched[0].href, href);
    assert_eq!(fetched[0].etag, new_etag);
    assert!(
        fetched[0].data.contains("FN:Ann Renamed"),
        "{}",
        fetched[0].data
    );
    assert!(
        fetched[1].data.contains("FN:Cat Three"),
        "{}",
        fetched[1].data
    );

    let garbage = client
        .changes(&book, Some("http://radicale.org/ns/sync/garbage"))
        .await;
    assert!(
        matches!(garbage, Err(DavError::TokenInvalid)),
        "a garbage token: {garbage:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_round_trip_as_the_user() {
    let server = start();
    let alice = connect(&server, ALICE, None).await;
    contacts_round_trip(&server, &alice).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_round_trip_as_the_service_account() {
    let server = start();
    let bob = service_on(&server, BOB.0).await;
    contacts_round_trip(&server, &bob).await;
    // bob sees what the service account wrote
    let himself = connect(&server, BOB, None).await;
    let book = himself.collection(Database::Contacts).await.expect("book");
    let listed = himself.changes(&book, None).await.expect("listing");
    assert_eq!(listed.changed.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_tasks_and_memos_go_to_their_own_calendars() {
    let server = start();
    let alice = connect(&server, ALICE, None).await;
    for (db, component) in [
        (Database::Calendar, "VEVENT"),
        (Database::Tasks, "VTODO"),
        (Database::Memos, "VJOURNAL"),
    ] {
        let collection = alice.collection(db).await.expect("the calendar");
        let uid = format!("{}-1", db.as_str());
        let data = ical(component, &uid, &format!("a {component}"));
        let (href, etag) = stored(
            alice
                .create(db, &collection, &format!("{uid}.ics"), &data)
                .await,
            "creating",
        );
        assert!(href.starts_with(&collection));
        let listed = alice.changes(&collection, None).await.expect("listing");
        assert_eq!(listed.changed.len(), 1, "{db:?}: {listed:?}");
        assert_eq!(listed.changed[0].href, href);
        let fetched = alice
            .fetch(db, &collection, std::slice::from_ref(&href))
            .await
            .expect("fetching");
        assert_eq!(fetched.len(), 1);
        assert_eq!(fetched[0].etag, etag);
        assert!(
            fetched[0].data.contains(&format!("BEGIN:{component}")),
            "{}",
            fetched[0].data
        );
    }
    // the service account reaches them too
    let service = service_on(&server, ALICE.0).await;
    let tasks = service.collection(Database::Tasks).await.expect("tasks");
    assert_eq!(tasks, "/alice@example.test/tasks/");
    assert_eq!(
        service
            .changes(&tasks, None)
            .await
            .expect("listing")
            .changed
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_connection_failures_say_what_happened() {
    let server = start();
    let wrong = DavClient::connect(&account(&server, (ALICE.0, "wrong")), None).await;
    assert!(
        matches!(&wrong, Err(DavError::Unauthorized { username }) if username == ALICE.0),
        "{wrong:?}"
    );
    let wrong_service = DavClient::connect(
        &account(&server, (server.service_account().0, "wrong")),
        Some("/alice@example.test/"),
    )
    .await;
    assert!(
        matches!(wrong_service, Err(DavError::Unauthorized { .. })),
        "{wrong_service:?}"
    );
    // bob may not work on alice's data
    let trespass = DavClient::connect(&account(&server, BOB), Some("/alice@example.test/")).await;
    assert!(
        matches!(trespass, Err(DavError::Forbidden { .. })),
        "{trespass:?}"
    );

    let closed = bramble_testkit::free_port();
    let unreachable = DavClient::connect(
        &DavAccount {
            url: format!("http://127.0.0.1:{closed}/"),
            username: ALICE.0.to_owned(),
            password: ALICE.1.to_owned(),
        },
        None,
    )
    .await;
    match unreachable {
        Err(e @ DavError::Unreachable { .. }) => {
            let message = e.to_string();
            assert!(
                message.contains(&format!("127.0.0.1:{closed}")),
                "{message}"
            );
            println!("closed port: {message}");
        }
        other => panic!("a closed port: {other:?}"),
    }
    let bad = DavClient::connect(
        &DavAccount {
            url: "ftp://127.0.0.1/".to_owned(),
            username: ALICE.0.to_owned(),
            password: ALICE.1.to_owned(),
        },
        None,
    )
    .await;
    assert!(matches!(bad, Err(DavError::BadUrl { .. })), "{bad:?}");
    let odd_name = connect(&server, ALICE, None)
        .await
        .create(
            Database::Contacts,
            "/alice@example.test/contacts/",
            "100%.vcf",
            "",
        )
        .await;
    assert!(
        matches!(odd_name, Err(DavError::BadName { .. })),
        "{odd_name:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_contacts() {
    const N: usize = 1000;
    let server = start();
    let alice = connect(&server, ALICE, None).await;
    let book = alice.collection(Database::Contacts).await.expect("book");

    let t0 = Instant::now();
    let created: Vec<Result<PutOutcome, DavError>> = futures::stream::iter(0..N)
        .map(|i| {
            let (alice, book) = (&alice, &book);
            async move {
                let uid = format!("bulk-{i:04}");
                alice
                    .create(
                        Database::Contacts,
                        book,
                        &format!("{uid}.vcf"),
                        &vcard(&uid, &format!("Person {i}")),
                    )
                    .await
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let create_time = t0.elapsed();
    for outcome in created {
        stored(outcome, "creating a contact");
    }

    let t1 = Instant::now();
    let listed = alice.changes(&book, None).await.expect("listing");
    let list_time = t1.elapsed();
    assert_eq!(listed.changed.len(), N);

    let hrefs: Vec<String> = listed.changed.iter().map(|l| l.href.clone()).collect();
    let t2 = Instant::now();
    let fetched = alice
        .fetch(Database::Contacts, &book, &hrefs)
        .await
        .expect("fetching");
    let fetch_time = t2.elapsed();
    assert_eq!(fetched.len(), N);
    assert!(fetched.iter().all(|f| f.data.contains("BEGIN:VCARD")));
    println!(
        "{N} contacts on Radicale: created in {create_time:?} (4 at a time), listed in \
         {list_time:?}, fetched in {fetch_time:?} ({} multigets)",
        N.div_ceil(bramble_server::sync::dav::FETCH_BATCH)
    );
}
