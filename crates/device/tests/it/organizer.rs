//! The synchronization service on the device (`bramble_device::organizer`) through a real
//! relay, with a scripted server sealing with `Session::server`: the server's batches stored
//! and answered record by record, the slow synchronization at activation, outcomes of the
//! device's changes (a conflict lost, a refusal), a change made offline sent after
//! reconnecting, wireless backup and restore.

use std::time::Duration;

use bramble_device::activation::{self, ActivateOptions, Profile, Stage};
use bramble_device::mail::{self, MailStore};
use bramble_device::organizer::RecordState;
use bramble_device::{Device, OrganizerEvent};
use bramble_net::link::frame_ref;
use bramble_net::{CertPin, Credentials, Link, LinkEvent};
use bramble_organizer::{Database, Fields};
use bramble_proto::schema::{
    self, ConflictRule, Envelope, OrganizerBatch, OrganizerBatchResult, OrganizerRecord,
    RecordOutcome, RecordState as Outcome, SyncDirection, envelope::Body,
};
use bramble_proto::{Address, MasterKey, Pin, Session, SrpId};
use bramble_relay::RelayHandle;

const STEP: Duration = Duration::from_secs(20);
const IDLE: Duration = Duration::from_millis(700);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {STEP:?}"))
}

fn env(body: Body) -> Envelope {
    Envelope {
        version: 1,
        body: Some(body),
    }
}

/// Calendar, contacts and tasks both ways, memos from the server only.
fn config(backup: bool) -> schema::SyncConfiguration {
    schema::SyncConfiguration {
        enabled: true,
        databases: Database::ALL
            .iter()
            .map(|d| schema::DatabaseSync {
                database: d.to_proto(),
                enabled: true,
                direction: if *d == Database::Memos {
                    SyncDirection::DirectionServerToDevice
                } else {
                    SyncDirection::DirectionBidirectional
                } as i32,
                conflict: ConflictRule::ConflictServerWins as i32,
            })
            .collect(),
        backup,
    }
}

fn contact(uid: &str, name: &str) -> String {
    bramble_organizer::new_record(
        Database::Contacts,
        Some(uid),
        &Fields {
            title: Some(name.into()),
            ..Fields::default()
        },
        1_700_000_000_000,
    )
    .expect("a contact")
    .1
}

fn server_record(uid: &str, data: String, version: &str) -> OrganizerRecord {
    OrganizerRecord {
        uid: uid.into(),
        data,
        deleted: false,
        version: version.into(),
        modified_ms: 0,
    }
}

fn stored_all(b: &OrganizerBatch) -> OrganizerBatchResult {
    OrganizerBatchResult {
        database: b.database,
        batch_id: b.batch_id,
        outcomes: b
            .records
            .iter()
            .map(|r| RecordOutcome {
                uid: r.uid.clone(),
                state: Outcome::RecordStored.into(),
                version: format!("v1-{}", r.uid),
                ..RecordOutcome::default()
            })
            .collect(),
    }
}

struct Server {
    link: Link,
    srp: SrpId,
    pin: Pin,
    session: Session,
}

impl Server {
    async fn send(&mut self, env: &Envelope) {
        let body = prost::Message::encode_to_vec(env);
        let frame = self
            .session
            .sealer
            .seal(Address::Srp(self.srp), Address::Pin(self.pin), &body)
            .expect("seals");
        self.link.send(frame).await.expect("server sends");
    }

    async fn recv(&mut self) -> Envelope {
        loop {
            match self.link.recv().await.expect("server receives") {
                LinkEvent::Report(_) => {}
                LinkEvent::Sealed(frame) => {
                    let plain = self
                        .session
                        .opener
                        .open(&frame)
                        .expect("the device's frame opens");
                    self.link.ack(vec![frame_ref(&frame)]).await.expect("acks");
                    return bramble_proto::decode_message(&plain, 1 << 22).expect("envelope");
                }
                other => panic!("unexpected event {other:?}"),
            }
        }
    }

    async fn expect<T>(&mut self, what: &str, mut pick: impl FnMut(Body) -> Option<T>) -> T {
        within(what, async {
            loop {
                if let Some(body) = self.recv().await.body
                    && let Some(t) = pick(body)
                {
                    return t;
                }
            }
        })
        .await
    }

    async fn batch(&mut self) -> OrganizerBatch {
        self.expect("an organizer batch", |b| match b {
            Body::OrganizerBatch(b) => Some(b),
            _ => None,
        })
        .await
    }

    /// The next batch `pick` takes, skipping others (repeats of batches not answered yet).
    async fn batch_where(
        &mut self,
        mut pick: impl FnMut(&OrganizerBatch) -> bool,
    ) -> OrganizerBatch {
        self.expect("an organizer batch", |b| match b {
            Body::OrganizerBatch(b) if pick(&b) => Some(b),
            _ => None,
        })
        .await
    }

    async fn result(&mut self, batch_id: u64) -> OrganizerBatchResult {
        self.expect("an organizer batch result", |b| match b {
            Body::OrganizerBatchResult(r) if r.batch_id == batch_id => Some(r),
            _ => None,
        })
        .await
    }

    async fn backup(&mut self) -> serde_json::Value {
        self.expect("a device backup", |b| match b {
            Body::DeviceBackup(b) => Some(serde_json::from_slice(&b.settings).expect("json")),
            _ => None,
        })
        .await
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    relay: RelayHandle,
    server: Server,
    dev: Device,
    store: MailStore,
}

impl Fixture {
    async fn new() -> Fixture {
        let tmp = tempfile::tempdir().expect("tempdir");
        let relay_dir = tmp.path().join("relay");
        let (srp, srp_key) = bramble_relay::srp_add(&relay_dir, None)
            .await
            .expect("SRP id added");
        let mut cfg = bramble_relay::RelayConfig::with_data_dir(&relay_dir);
        cfg.server_listen = "127.0.0.1:0".parse().expect("addr");
        cfg.device_listen = "127.0.0.1:0".parse().expect("addr");
        let relay = bramble_relay::start(cfg).await.expect("relay starts");
        let key = MasterKey::generate().expect("key");
        let mut dev = Device::open(&tmp.path().join("phone")).expect("device");
        dev.set_relay(&relay.device_addr().to_string(), Some(relay.fingerprint()))
            .expect("sets");
        dev.provision(srp, key.clone()).expect("binds");
        dev.install_profile(Profile {
            email: "alice@example.com".into(),
            domain_key: String::new(),
            policy: None,
            service_books: vec![("SYNC".into(), "Synchronization".into())],
            activated_at_ms: Some(1),
        })
        .expect("profile");
        let pin = dev.pin();
        let store = dev.mail_store().await.expect("store");
        let link = Link::connect(
            &relay.server_addr().to_string(),
            &CertPin::new(Some(relay.fingerprint())),
            Credentials::Server { srp, key: &srp_key },
        )
        .await
        .expect("server logs in");
        let server = Server {
            link,
            srp,
            pin,
            session: Session::server(&key, 1..1_000_000, 0).expect("session"),
        };
        within("connect", dev.connect())
            .await
            .expect("connects")
            .close()
            .await;
        Fixture {
            _tmp: tmp,
            relay,
            server,
            dev,
            store,
        }
    }

    async fn sync(&mut self) -> mail::SyncReport {
        let mut conn = within("connect", self.dev.connect())
            .await
            .expect("connects");
        let report = within("sync", mail::sync(&mut conn, &self.store, IDLE))
            .await
            .expect("synced");
        within("close", conn.close()).await;
        report
    }

    /// The server sends its configuration; the device keeps it.
    async fn configure(&mut self, backup: bool) {
        self.server
            .send(&env(Body::SyncConfiguration(config(backup))))
            .await;
        let report = self.sync().await;
        assert!(
            matches!(report.organizer.first(), Some(OrganizerEvent::Configured(c)) if c.enabled),
            "{report:?}"
        );
    }

    async fn shutdown(self) {
        self.store.close().await;
        self.relay.shutdown().await;
    }
}

#[tokio::test]
async fn a_server_batch_is_stored_and_answered_and_a_malformed_record_rejected() {
    let mut f = Fixture::new().await;
    f.configure(false).await;
    let batch = OrganizerBatch {
        database: Database::Contacts.to_proto(),
        batch_id: 7,
        slow: false,
        records: vec![
            server_record("ann", contact("ann", "Ann Lee"), "e1"),
            server_record("bad", "BEGIN:VCARD\r\nFN:broken".into(), "e2"),
            server_record("bo", contact("bo", "Bo Chen"), "e3"),
        ],
        last: false,
    };
    f.server.send(&env(Body::OrganizerBatch(batch))).await;
    let report = f.sync().await;
    let result = f.server.result(7).await;
    let states: Vec<(&str, i32)> = result
        .outcomes
        .iter()
        .map(|o| (o.uid.as_str(), o.state))
        .collect();
    assert_eq!(
        states,
        [
            ("ann", Outcome::RecordStored as i32),
            ("bad", Outcome::RecordRejected as i32),
            ("bo", Outcome::RecordStored as i32),
        ]
    );
    assert!(
        !result.outcomes[1].detail.is_empty(),
        "a refusal says why: {result:?}"
    );
    let lines: Vec<String> = report.organizer.iter().map(ToString::to_string).collect();
    assert!(
        lines.iter().any(|l| l == "Contacts: 2 new from the server"),
        "{lines:?}"
    );
    let org = f.dev.organizer().await.expect("organizer");
    let entries = org.list(Database::Contacts).await.expect("list");
    let got: Vec<(&str, &str, Option<&str>, RecordState)> = entries
        .iter()
        .map(|e| {
            (
                e.uid.as_str(),
                e.summary.title.as_str(),
                e.version.as_deref(),
                e.state,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("ann", "Ann Lee", Some("e1"), RecordState::Synced),
            ("bo", "Bo Chen", Some("e3"), RecordState::Synced),
        ]
    );

    // The same batch again (no answer reached the server): answered as before, nothing twice.
    let again = OrganizerBatch {
        database: Database::Contacts.to_proto(),
        batch_id: 7,
        records: vec![server_record("ann", contact("ann", "Ann Lee"), "e1")],
        ..OrganizerBatch::default()
    };
    f.server.send(&env(Body::OrganizerBatch(again))).await;
    f.sync().await;
    assert_eq!(
        f.server.result(7).await.outcomes[0].state,
        Outcome::RecordStored as i32
    );
    assert_eq!(org.list(Database::Contacts).await.expect("list").len(), 2);

    // A deletion from the server is taken.
    let delete = OrganizerBatch {
        database: Database::Contacts.to_proto(),
        batch_id: 8,
        records: vec![OrganizerRecord {
            uid: "bo".into(),
            deleted: true,
            ..OrganizerRecord::default()
        }],
        ..OrganizerBatch::default()
    };
    f.server.send(&env(Body::OrganizerBatch(delete))).await;
    f.sync().await;
    f.server.result(8).await;
    assert_eq!(org.list(Database::Contacts).await.expect("list").len(), 1);
    f.shutdown().await;
}

#[tokio::test]
async fn the_slow_synchronization_sends_everything_in_batches_calendar_first() {
    let mut f = Fixture::new().await;
    let org = f.dev.organizer().await.expect("organizer");
    for i in 0..150 {
        org.add(
            Database::Contacts,
            &Fields {
                title: Some(format!("Person {i}")),
                ..Fields::default()
            },
        )
        .await
        .expect("adds");
    }
    for t in ["Standup", "Review"] {
        org.add(
            Database::Calendar,
            &Fields {
                title: Some(t.into()),
                start: Some("2030-01-02 09:00".into()),
                ..Fields::default()
            },
        )
        .await
        .expect("adds");
    }
    org.add(
        Database::Memos,
        &Fields {
            title: Some("Memo".into()),
            ..Fields::default()
        },
    )
    .await
    .expect("adds");

    let Fixture { dev, server, .. } = &mut f;
    let mut conn = within("connect", dev.connect()).await.expect("connects");
    let mut stages = Vec::new();
    let opts = ActivateOptions {
        timeout: STEP,
        ..ActivateOptions::default()
    };
    let device_side = activation::complete_activation(&mut conn, "alice@example.com", &opts, |s| {
        stages.push(s.clone());
    });
    let server_side = async {
        server
            .send(&env(Body::ServiceBooks(schema::ServiceBooks {
                books: vec![schema::ServiceBook {
                    cid: "SYNC".into(),
                    name: "Synchronization".into(),
                    ..schema::ServiceBook::default()
                }],
            })))
            .await;
        server
            .expect("the sync configuration request", |b| {
                matches!(b, Body::SyncConfigRequest(_)).then_some(())
            })
            .await;
        server
            .send(&env(Body::SyncConfiguration(config(true))))
            .await;
        let start = server
            .expect("SlowSyncStart", |b| match b {
                Body::SlowSyncStart(s) => Some(s),
                _ => None,
            })
            .await;
        assert!(!start.overwrite_device);
        // Calendar, contacts, tasks (memos are from the server only: not sent).
        let mut seen: Vec<(i32, usize, bool)> = Vec::new();
        let mut ids = std::collections::BTreeSet::new();
        while seen.iter().filter(|s| s.2).count() < 3 {
            let b = server.batch().await;
            assert!(b.slow, "{b:?}");
            assert!(ids.insert(b.batch_id), "batch ids are unique");
            seen.push((b.database, b.records.len(), b.last));
            server
                .send(&env(Body::OrganizerBatchResult(stored_all(&b))))
                .await;
        }
        assert_eq!(
            seen,
            [
                (Database::Calendar.to_proto(), 2, true),
                (Database::Contacts.to_proto(), 100, false),
                (Database::Contacts.to_proto(), 50, true),
                (Database::Tasks.to_proto(), 0, true),
            ]
        );
        // The server's own slow batch: what the device does not hold yet.
        let (_, event) = bramble_organizer::new_record(
            Database::Calendar,
            Some("from-server"),
            &Fields {
                title: Some("Offsite".into()),
                start: Some("2030-02-01".into()),
                ..Fields::default()
            },
            1,
        )
        .expect("event");
        server
            .send(&env(Body::OrganizerBatch(OrganizerBatch {
                database: Database::Calendar.to_proto(),
                batch_id: 1,
                slow: true,
                records: vec![server_record("from-server", event, "s1")],
                last: true,
            })))
            .await;
        let r = server.result(1).await;
        assert_eq!(r.outcomes[0].state, Outcome::RecordStored as i32);
        server
            .send(&env(Body::SlowSyncDone(schema::SlowSyncDone::default())))
            .await;
        server
            .send(&env(Body::ActivationComplete(schema::ActivationComplete {
                email: "alice@example.com".into(),
            })))
            .await;
        // After activation, with backup on: a backup.
        server.backup().await
    };
    let (done, backup) = within("activation", async {
        tokio::join!(device_side, server_side)
    })
    .await;
    done.expect("activation completes");
    assert!(backup["options"].is_object(), "{backup}");
    within("close", conn.close()).await;

    let slow: Vec<String> = stages
        .iter()
        .filter(|s| matches!(s, Stage::SlowSync { .. } | Stage::SlowSyncDone))
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        slow,
        [
            "Slow synchronization: Calendar (2 records sent)",
            "Slow synchronization: Contacts (150 records sent)",
            "Slow synchronization: Tasks (0 records sent)",
            "Slow synchronization complete",
        ]
    );
    assert_eq!(stages.last(), Some(&Stage::Complete));
    let calendar = org.list(Database::Calendar).await.expect("list");
    assert_eq!(calendar.len(), 3);
    assert!(calendar.iter().all(|e| e.state == RecordState::Synced));
    let contacts = org.list(Database::Contacts).await.expect("list");
    assert!(
        contacts
            .iter()
            .all(|e| e.state == RecordState::Synced && e.version == Some(format!("v1-{}", e.uid)))
    );
    assert!(org.pending_batches().await.expect("b").is_empty());
    f.shutdown().await;
}

#[tokio::test]
async fn a_change_made_offline_is_sent_again_until_answered_and_outcomes_are_applied() {
    let mut f = Fixture::new().await;
    f.configure(false).await;
    let org = f.dev.organizer().await.expect("organizer");
    // Made while not connected.
    let uid = org
        .add(
            Database::Contacts,
            &Fields {
                title: Some("Cy Diaz".into()),
                ..Fields::default()
            },
        )
        .await
        .expect("adds");
    f.sync().await;
    let first = f.server.batch().await;
    assert_eq!(first.records.len(), 1);
    assert_eq!(first.records[0].uid, uid);
    assert!(
        first.records[0].version.is_empty(),
        "a new record names no version"
    );
    // Not answered: sent again on the next connection, with the same batch id.
    f.sync().await;
    let again = f.server.batch().await;
    assert_eq!(again.batch_id, first.batch_id);
    f.server
        .send(&env(Body::OrganizerBatchResult(stored_all(&again))))
        .await;
    let report = f.sync().await;
    let lines: Vec<String> = report.organizer.iter().map(ToString::to_string).collect();
    assert_eq!(lines, ["Contacts: 1 change taken by the server"]);
    let e = org.get(Database::Contacts, &uid).await.expect("there");
    assert_eq!(e.state, RecordState::Synced);
    assert_eq!(e.version, Some(format!("v1-{uid}")));

    // Changed on the device and on the server: the server's copy wins and replaces it.
    org.edit(
        Database::Contacts,
        &uid,
        &Fields {
            title: Some("Cy D.".into()),
            ..Fields::default()
        },
    )
    .await
    .expect("edits");
    f.sync().await;
    let change = f.server.batch_where(|b| b.batch_id != first.batch_id).await;
    assert_eq!(change.records[0].version, format!("v1-{uid}"));
    f.server
        .send(&env(Body::OrganizerBatchResult(OrganizerBatchResult {
            database: change.database,
            batch_id: change.batch_id,
            outcomes: vec![RecordOutcome {
                uid: uid.clone(),
                state: Outcome::RecordConflictLost.into(),
                version: "v2".into(),
                detail: String::new(),
                server_record: Some(server_record(&uid, contact(&uid, "Cyrus Diaz"), "v2")),
            }],
        })))
        .await;
    let report = f.sync().await;
    let lines: Vec<String> = report.organizer.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "Your change to the contact \u{201c}Cy D.\u{201d} was not kept: it was changed on the \
             server too, and the server's copy replaces yours."
        ]
    );
    let e = org.get(Database::Contacts, &uid).await.expect("there");
    assert_eq!(
        (e.summary.title.as_str(), e.version.as_deref(), e.state),
        ("Cyrus Diaz", Some("v2"), RecordState::Synced)
    );

    // Refused: kept on the device with why, and not sent again until changed.
    let task = org
        .add(
            Database::Tasks,
            &Fields {
                title: Some("Expenses".into()),
                ..Fields::default()
            },
        )
        .await
        .expect("adds");
    f.sync().await;
    let b = f
        .server
        .batch_where(|b| b.database == Database::Tasks.to_proto())
        .await;
    f.server
        .send(&env(Body::OrganizerBatchResult(OrganizerBatchResult {
            database: b.database,
            batch_id: b.batch_id,
            outcomes: vec![RecordOutcome {
                uid: task.clone(),
                state: Outcome::RecordRejected.into(),
                detail: "the task list is full".into(),
                ..RecordOutcome::default()
            }],
        })))
        .await;
    let report = f.sync().await;
    assert!(
        report.organizer.iter().any(|e| matches!(e,
            OrganizerEvent::ChangeRefused { detail, .. } if detail == "the task list is full")),
        "{report:?}"
    );
    let e = org.get(Database::Tasks, &task).await.expect("kept");
    assert_eq!(e.detail.as_deref(), Some("the task list is full"));
    let report = f.sync().await;
    assert_eq!(
        report.organizer_sent, 0,
        "a refused change is not sent again"
    );

    // Memos come from the server only: a change there stays on the device.
    let memo = org
        .add(
            Database::Memos,
            &Fields {
                title: Some("Mine".into()),
                ..Fields::default()
            },
        )
        .await
        .expect("adds");
    assert_eq!(
        org.get(Database::Memos, &memo).await.expect("e").state,
        RecordState::Local
    );
    assert_eq!(f.sync().await.organizer_sent, 0);
    f.shutdown().await;
}

#[tokio::test]
async fn options_are_backed_up_when_they_change_and_restored_from_a_backup() {
    let mut f = Fixture::new().await;
    f.dev.set_option("ringtone", "Bells").expect("sets");
    // Backup turned on: one goes at once.
    f.configure(true).await;
    let b = f.server.backup().await;
    assert_eq!(b["options"]["ringtone"], "Bells");
    f.dev.set_option("font", "large").expect("sets");
    let report = f.sync().await;
    assert_eq!(report.organizer_sent, 1);
    let b = f.server.backup().await;
    assert_eq!(b["options"]["font"], "large");

    let settings = serde_json::json!({"options": {"ringtone": "Chimes", "wallpaper": "sea"}});
    f.server
        .send(&env(Body::BackupRestore(schema::BackupRestore {
            settings: serde_json::to_vec(&settings).expect("json").into(),
            taken_ms: 1,
            from_pin: "2A4F9C01".into(),
        })))
        .await;
    let report = f.sync().await;
    let lines: Vec<String> = report.organizer.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        ["Your options were restored from the backup of device 2A4F9C01 (2 options)."]
    );
    let o = f.dev.options();
    assert_eq!(o["ringtone"], "Chimes");
    assert_eq!(o["wallpaper"], "sea");
    assert_eq!(o["font"], "large", "the device's own stay");
    // And a backup of its own follows.
    let b = f.server.backup().await;
    assert_eq!(b["options"]["wallpaper"], "sea");
    f.shutdown().await;
}

#[tokio::test]
async fn a_change_waits_for_its_answer_while_connected() {
    let mut f = Fixture::new().await;
    f.configure(false).await;
    let org = f.dev.organizer().await.expect("organizer");
    let uid = org
        .add(
            Database::Calendar,
            &Fields {
                title: Some("Lunch".into()),
                start: Some("2030-03-01 12:00".into()),
                ..Fields::default()
            },
        )
        .await
        .expect("adds");
    let Fixture {
        dev, server, store, ..
    } = &mut f;
    let mut conn = within("connect", dev.connect()).await.expect("connects");
    let device_side = mail::wait_for_organizer(&mut conn, store, STEP);
    let server_side = async {
        let b = server.batch().await;
        server
            .send(&env(Body::OrganizerBatchResult(stored_all(&b))))
            .await;
    };
    let (report, ()) = within("the answer", async {
        tokio::join!(device_side, server_side)
    })
    .await;
    within("close", conn.close()).await;
    let report = report.expect("answered");
    assert_eq!(report.organizer_sent, 1);
    assert!(
        matches!(
            report.organizer.as_slice(),
            [OrganizerEvent::ChangesTaken { count: 1, .. }]
        ),
        "{report:?}"
    );
    assert_eq!(
        org.get(Database::Calendar, &uid).await.expect("e").state,
        RecordState::Synced
    );
    f.shutdown().await;
}

#[tokio::test]
async fn overwrite_drops_the_devices_records_and_sends_none() {
    let mut f = Fixture::new().await;
    let org = f.dev.organizer().await.expect("organizer");
    org.add(
        Database::Contacts,
        &Fields {
            title: Some("Old Friend".into()),
            ..Fields::default()
        },
    )
    .await
    .expect("adds");
    let Fixture { dev, server, .. } = &mut f;
    let mut conn = within("connect", dev.connect()).await.expect("connects");
    let opts = ActivateOptions {
        timeout: STEP,
        organizer: activation::OrganizerData::Overwrite,
        ..ActivateOptions::default()
    };
    let device_side =
        activation::complete_activation(&mut conn, "alice@example.com", &opts, |_| {});
    let server_side = async {
        server
            .send(&env(Body::ServiceBooks(schema::ServiceBooks::default())))
            .await;
        server
            .expect("the sync configuration request", |b| {
                matches!(b, Body::SyncConfigRequest(_)).then_some(())
            })
            .await;
        server
            .send(&env(Body::SyncConfiguration(config(false))))
            .await;
        let start = server
            .expect("SlowSyncStart", |b| match b {
                Body::SlowSyncStart(s) => Some(s),
                Body::OrganizerBatch(b) => panic!("nothing is sent when overwriting: {b:?}"),
                _ => None,
            })
            .await;
        assert!(start.overwrite_device);
        server
            .send(&env(Body::OrganizerBatch(OrganizerBatch {
                database: Database::Contacts.to_proto(),
                batch_id: 1,
                slow: true,
                records: vec![server_record("srv", contact("srv", "From Server"), "e1")],
                last: true,
            })))
            .await;
        server.result(1).await;
        server
            .send(&env(Body::SlowSyncDone(schema::SlowSyncDone::default())))
            .await;
        server
            .send(&env(Body::ActivationComplete(
                schema::ActivationComplete::default(),
            )))
            .await;
    };
    let (done, ()) = within("activation", async {
        tokio::join!(device_side, server_side)
    })
    .await;
    done.expect("activation completes");
    within("close", conn.close()).await;
    let names: Vec<String> = org
        .list(Database::Contacts)
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.summary.title)
        .collect();
    assert_eq!(names, ["From Server"]);
    f.shutdown().await;
}
