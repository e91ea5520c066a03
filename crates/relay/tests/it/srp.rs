//! SRP ids: administration, server logins, and two servers on one id (seed 003).

use std::time::Duration;

use bramble_proto::SrpId;
use bramble_proto::schema::RefusalReason;
use bramble_relay::{SrpState, srp_add, srp_disable, srp_enable, srp_list, srp_remove};

use crate::support::{Client, Event, Sessions, TestRelay, identity};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srp_administration_works_on_the_data_dir_without_a_relay() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, key) = srp_add(dir.path(), None).await.expect("adds");
    assert_eq!(a.to_string().len(), 9, "S and eight digits: {a}");
    assert_eq!(key.len(), 39, "8 groups of 4 hex digits: {key}");
    assert!(
        key.split('-')
            .all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_hexdigit()))
    );
    let b: SrpId = "S40012345".parse().expect("srp");
    let (b2, key_b) = srp_add(dir.path(), Some(b)).await.expect("adds");
    assert_eq!(b2, b);
    assert_ne!(key, key_b);
    let err = srp_add(dir.path(), Some(b)).await.expect_err("twice");
    assert!(err.to_string().contains("already registered"), "{err}");

    let list = srp_list(dir.path()).await.expect("lists");
    assert_eq!(list.len(), 2);
    assert!(
        list.iter()
            .all(|e| e.state == SrpState::Enabled && !e.connected)
    );
    assert!(
        list.iter()
            .all(|e| e.last_login_ms.is_none() && e.created_at_ms > 0)
    );

    // The key itself is not stored anywhere.
    let db = std::fs::read(dir.path().join("relay.db")).expect("db");
    let wal = std::fs::read(dir.path().join("relay.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        let k = key.replace('-', "");
        assert!(!bytes.windows(k.len()).any(|w| w == k.as_bytes()));
        assert!(!bytes.windows(key.len()).any(|w| w == key.as_bytes()));
    }

    srp_disable(dir.path(), b).await.expect("disables");
    let e = srp_list(dir.path()).await.expect("lists");
    let e = e.iter().find(|e| e.id == b).expect("listed");
    assert_eq!(e.state, SrpState::Disabled);
    assert_eq!(e.state.to_string(), "disabled");
    let json = serde_json::to_value(e).expect("json");
    assert_eq!(json["id"], "S40012345");
    assert_eq!(json["state"], "disabled");

    srp_enable(dir.path(), b).await.expect("enables");
    assert!(srp_remove(dir.path(), b).await.expect("removes"));
    assert!(!srp_remove(dir.path(), b).await.expect("removes"));
    let err = srp_enable(dir.path(), b).await.expect_err("gone");
    assert!(err.to_string().contains("not registered"), "{err}");
    assert_eq!(srp_list(dir.path()).await.expect("lists").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_logins_are_checked_against_relay_db_at_each_login() {
    let relay = TestRelay::start().await;
    let (srp, key) = relay.add_srp().await;

    let unknown = SrpId::new(12_345_678).expect("srp");
    let e = Client::server(relay.server_addr(), unknown, &key)
        .await
        .err()
        .expect("refused");
    assert_eq!(e.reason(), Some(RefusalReason::SrpUnknown), "{e:?}");

    let wrong = "0000-0000-0000-0000-0000-0000-0000-0000";
    let e = Client::server(relay.server_addr(), srp, wrong)
        .await
        .err()
        .expect("refused");
    assert_eq!(e.reason(), Some(RefusalReason::SrpBadKey), "{e:?}");
    let e = Client::server(relay.server_addr(), srp, "not a key")
        .await
        .err()
        .expect("refused");
    assert_eq!(e.reason(), Some(RefusalReason::SrpBadKey), "{e:?}");

    // Disabled while the relay runs: the next login sees it.
    srp_disable(relay.data_dir(), srp).await.expect("disables");
    let e = Client::server(relay.server_addr(), srp, &key)
        .await
        .err()
        .expect("refused");
    assert_eq!(e.reason(), Some(RefusalReason::SrpDisabled), "{e:?}");
    srp_enable(relay.data_dir(), srp).await.expect("enables");

    // The key is accepted however it is typed.
    let typed = key.to_uppercase().replace('-', " ");
    let server = Client::server(relay.server_addr(), srp, &typed)
        .await
        .expect("logs in");
    let list = relay.handle.srp_list().await.expect("lists");
    assert!(list[0].connected);
    assert!(list[0].last_login_ms.is_some());

    // A device hello on the server port is out of order.
    let id = identity();
    let e = Client::device(relay.server_addr(), &id)
        .await
        .err()
        .expect("refused");
    assert_eq!(e.reason(), Some(RefusalReason::Protocol), "{e:?}");
    server.close().await;
    relay.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_live_servers_on_one_srp_id_are_a_conflict_until_enabled() {
    let relay = TestRelay::start().await;
    let (srp, key) = relay.add_srp().await;
    let mut first = Client::server(relay.server_addr(), srp, &key)
        .await
        .expect("first server logs in");
    let first_port = first
        .framed
        .get_ref()
        .get_ref()
        .0
        .local_addr()
        .expect("addr")
        .port();
    // The first server is alive: it reads and answers keepalives.
    let first_task = tokio::spawn(async move { first.closed().await });

    let e = Client::server(relay.server_addr(), srp, &key)
        .await
        .err()
        .expect("second refused");
    assert_eq!(e.reason(), Some(RefusalReason::SrpConflict), "{e:?}");
    let crate::support::LoginError::Refused(_, detail) = &e else {
        unreachable!()
    };
    assert!(
        detail.contains(&format!("bramble relay srp enable {srp}")),
        "{detail}"
    );

    let (reason, _) = first_task
        .await
        .expect("task")
        .expect("the first server is refused too");
    assert_eq!(reason, RefusalReason::SrpConflict);

    let list = srp_list(relay.data_dir()).await.expect("lists");
    assert_eq!(list[0].state, SrpState::Conflict);
    let why = list[0].state_reason.clone().unwrap_or_default();
    assert!(why.contains(&format!("127.0.0.1:{first_port}")), "{why}");
    assert!(crate::support::logs_text().contains(&format!(
        "SRP {srp} is used by two live servers (127.0.0.1:{first_port} and 127.0.0.1:"
    )));

    // Refused until an operator enables it again.
    let e = Client::server(relay.server_addr(), srp, &key)
        .await
        .err()
        .expect("refused while in conflict");
    assert_eq!(e.reason(), Some(RefusalReason::SrpConflict), "{e:?}");
    srp_enable(relay.data_dir(), srp).await.expect("enables");
    let server = Client::server(relay.server_addr(), srp, &key)
        .await
        .expect("logs in after enable");
    server.close().await;
    relay.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_is_replaced_by_a_new_login_without_conflict() {
    let relay = TestRelay::start().await;
    let (srp, key) = relay.add_srp().await;
    let id = identity();
    let pin = id.pin();
    let mut keys = Sessions::new();
    let mut old = Client::server(relay.server_addr(), srp, &key)
        .await
        .expect("first server logs in");
    let mut device = Client::device(relay.device_addr(), &id)
        .await
        .expect("device logs in");

    // A frame reaches the old server, which has stopped reading and never acks.
    device
        .send(keys.seal_for_server(pin, srp, "in flight"))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = std::time::Instant::now();
    let mut new = Client::server(relay.server_addr(), srp, &key)
        .await
        .expect("the new server is accepted");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "it waited for the probe"
    );

    // What was in flight to the old server comes to the new one.
    let f = new.sealed().await;
    assert_eq!(keys.open_at_server(&f), "in flight");
    new.ack(&[&f]).await;

    // The old connection is closed without a conflict; the id stays enabled.
    let mut ended = false;
    for _ in 0..4 {
        match old.event().await {
            Event::Closed => {
                ended = true;
                break;
            }
            Event::Refused(r, d) => panic!("the old server was refused: {r:?} {d}"),
            _ => {}
        }
    }
    assert!(ended, "the old connection was closed");
    let list = srp_list(relay.data_dir()).await.expect("lists");
    assert_eq!(list[0].state, SrpState::Enabled);
    relay.handle.shutdown().await;
}
