//! The policy service on the device (`bramble_device::manage`) through a real relay, with a
//! scripted server sealing with `Session::server`: IT policy updates and compliance, lock and
//! unlock, wipes, removal of the organization's data, key regeneration, software.

use std::time::Duration;

use bramble_device::activation::Profile;
use bramble_device::mail::{self, MailStore};
use bramble_device::manage::{self, AppSource};
use bramble_device::{Device, DeviceError, Incoming, MailEvent, ManageEvent};
use bramble_net::link::frame_ref;
use bramble_net::{CertPin, Credentials, Link, LinkEvent};
use bramble_proto::activation::{DomainKey, sha256};
use bramble_proto::rekey::KeyExchange;
use bramble_proto::schema::{
    self, AppDisposition, AppState, CommandState, Envelope, ItCommand, envelope::Body,
    it_command::Command, policy_rule::Value,
};
use bramble_proto::{Address, MasterKey, Pin, Session, SrpId};
use bramble_relay::RelayHandle;

const STEP: Duration = Duration::from_secs(20);
/// How long a sync waits for more once the queue is empty.
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

fn command(command_id: u64, c: Command) -> Envelope {
    env(Body::ItCommand(ItCommand {
        command_id,
        command: Some(c),
    }))
}

fn flag(name: &str, b: bool) -> schema::PolicyRule {
    schema::PolicyRule {
        name: name.into(),
        value: Some(Value::Flag(b)),
    }
}

fn number(name: &str, n: i64) -> schema::PolicyRule {
    schema::PolicyRule {
        name: name.into(),
        value: Some(Value::Number(n)),
    }
}

fn text(name: &str, t: &str) -> schema::PolicyRule {
    schema::PolicyRule {
        name: name.into(),
        value: Some(Value::Text(t.into())),
    }
}

fn policy(name: &str, version: u64, rules: Vec<schema::PolicyRule>) -> schema::ItPolicy {
    schema::ItPolicy {
        name: name.into(),
        version,
        issued_at_ms: 1_700_000_000_000,
        rules,
    }
}

fn domain_key() -> DomainKey {
    DomainKey::from_pkcs8(&DomainKey::generate_pkcs8().expect("key")).expect("key")
}

/// The enterprise server's side: a link under an SRP id, one session with the device.
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

    /// The next envelope that `pick` takes, skipping others.
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

    async fn result(&mut self, command_id: u64) -> schema::CommandResult {
        self.expect("a command result", |b| match b {
            Body::CommandResult(r) if r.command_id == command_id => Some(r),
            _ => None,
        })
        .await
    }

    async fn policy_applied(&mut self) -> schema::PolicyApplied {
        self.expect("PolicyApplied", |b| match b {
            Body::PolicyApplied(a) => Some(a),
            _ => None,
        })
        .await
    }
}

/// A relay, a bound device with a profile (domain key pinned), a server, and the device's
/// mail store.
struct Fixture {
    tmp: tempfile::TempDir,
    relay: RelayHandle,
    server: Server,
    dev: Device,
    store: MailStore,
    domain: DomainKey,
    key: MasterKey,
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
        let domain = domain_key();
        let mut dev = Device::open(&tmp.path().join("phone")).expect("device");
        dev.set_relay(&relay.device_addr().to_string(), Some(relay.fingerprint()))
            .expect("sets");
        dev.provision(srp, key.clone()).expect("binds");
        dev.install_profile(Profile {
            email: "alice@example.com".into(),
            domain_key: hex::encode(domain.public_key()),
            policy: None,
            service_books: vec![("CMIME".into(), "Desktop".into())],
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
        // Seen once, so the relay queues for this PIN.
        within("connect", dev.connect())
            .await
            .expect("connects")
            .close()
            .await;
        Fixture {
            tmp,
            relay,
            server,
            dev,
            store,
            domain,
            key,
        }
    }

    fn home(&self) -> std::path::PathBuf {
        self.tmp.path().join("phone")
    }

    /// Connects, syncs until nothing arrives for [`IDLE`], disconnects.
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

    async fn apply_policy(&mut self, p: &schema::ItPolicy) -> schema::PolicyApplied {
        let signed = self.domain.sign_policy(p);
        self.server.send(&env(Body::ItPolicy(signed))).await;
        self.sync().await;
        self.server.policy_applied().await
    }

    async fn shutdown(self) {
        self.store.close().await;
        self.relay.shutdown().await;
    }
}

fn mail_item(ref_id: u64) -> Envelope {
    env(Body::MailItem(Box::new(schema::MailItem {
        ref_id,
        folder: "INBOX".into(),
        headers: Some(schema::MailHeaders {
            from: "bob@example.com".into(),
            subject: "Hello".into(),
            ..Default::default()
        }),
        text: "Hi".into(),
        text_total: 2,
        ..Default::default()
    })))
}

#[tokio::test]
async fn a_policy_update_is_applied_and_compliance_reported_when_it_changes() {
    let mut f = Fixture::new().await;
    let p = policy(
        "Basic Password Security",
        3,
        vec![
            flag("password_required", true),
            number("password_min_length", 6),
            text("password_complexity", "letters and digits"),
            flag("disable_camera", true),
            flag("disable_bluetooth", false),
            number("max_attachment_kb", 1),
            flag("content_protection", true),
        ],
    );
    let hash = sha256(&f.domain.sign_policy(&p).policy);
    let applied = f.apply_policy(&p).await;
    assert!(applied.applied, "{applied:?}");
    assert_eq!(applied.policy_hash.as_ref(), hash);
    assert_eq!(applied.version, 3);
    assert_eq!(
        applied.problems,
        ["A device password is required and none is set: run `bramble device password set`."]
    );
    let in_force = f.dev.policy().expect("a policy");
    assert_eq!(
        (in_force.name.as_str(), in_force.version),
        ("Basic Password Security", 3)
    );
    let s = f.dev.status();
    assert!(s.camera_disabled && !s.bluetooth_disabled && s.content_protection);
    assert_eq!(s.max_attachment_bytes, Some(1024));
    assert_eq!(s.compliance_problems, applied.problems);

    // An attachment over the policy's 1 KB is not downloaded, and the user is told why.
    let mut with_attachment = mail_item(3);
    if let Some(Body::MailItem(item)) = &mut with_attachment.body {
        item.attachments.push(schema::AttachmentInfo {
            index: 0,
            name: "big.pdf".into(),
            content_type: "application/pdf".into(),
            size: 3000,
        });
    }
    f.server.send(&with_attachment).await;
    f.sync().await;
    let out = f.tmp.path().join("big.pdf");
    let mut conn = within("connect", f.dev.connect()).await.expect("connects");
    let refused = mail::fetch_attachment(&mut conn, &f.store, 3, 0, &out, STEP)
        .await
        .expect_err("forbidden");
    conn.close().await;
    assert!(
        matches!(
            refused,
            DeviceError::AttachmentForbidden {
                size: 3000,
                max: 1024
            }
        ),
        "{refused:?}"
    );
    assert!(
        refused.to_string().contains("larger than 1 KB"),
        "{refused}"
    );
    assert!(!out.exists());

    // A password the policy refuses is refused with the rule; a good one fixes compliance,
    // which the server hears on the next connection, with the same hash.
    let refused = f.dev.set_password("abc").expect_err("too short");
    assert!(
        matches!(&refused, DeviceError::PasswordRefused(w) if w.contains("at least 6 characters")),
        "{refused}"
    );
    assert!(matches!(
        f.dev.set_password("abcdefg"),
        Err(DeviceError::PasswordRefused(_))
    ));
    f.dev.set_password("abc123").expect("set");
    assert!(f.dev.compliance_problems().is_empty());
    assert_eq!(f.dev.pending_replies(), 1);
    f.sync().await;
    let again = f.server.policy_applied().await;
    assert_eq!(again.policy_hash.as_ref(), hash);
    assert!(again.applied && again.problems.is_empty(), "{again:?}");
    assert_eq!(f.dev.pending_replies(), 0);

    // A user's own application is fine until a policy forbids them: then it goes.
    f.dev
        .install_local_app("Game", "1.0", b"game bytes")
        .expect("installed");
    let strict = policy(
        "No 3rd Party Applications",
        4,
        vec![
            flag("password_required", true),
            flag("allow_third_party_apps", false),
        ],
    );
    let applied = f.apply_policy(&strict).await;
    assert!(
        applied.applied && applied.problems.is_empty(),
        "{applied:?}"
    );
    assert!(f.dev.apps().is_empty(), "{:?}", f.dev.apps());
    let refused = f
        .dev
        .install_local_app("Game", "1.1", b"x")
        .expect_err("forbidden");
    assert!(refused.to_string().contains("IT policy"), "{refused}");
    assert!(!f.home().join("apps").read_dir().expect("dir").any(|_| true));
    f.shutdown().await;
}

#[tokio::test]
async fn a_policy_signed_by_another_domain_is_refused_and_the_policy_in_force_stays() {
    let mut f = Fixture::new().await;
    let first = f
        .apply_policy(&policy("Default", 1, vec![flag("disable_camera", true)]))
        .await;
    assert!(first.applied);
    let foreign = domain_key().sign_policy(&policy("Evil", 9, vec![]));
    f.server.send(&env(Body::ItPolicy(foreign))).await;
    let report = f.sync().await;
    assert!(
        matches!(report.managed.as_slice(), [ManageEvent::PolicyRefused { reason }] if reason.contains("another domain")),
        "{report:?}"
    );
    let refused = f.server.policy_applied().await;
    assert!(!refused.applied);
    assert!(
        refused.problems[0].contains("signed by another domain"),
        "{refused:?}"
    );
    let in_force = f.dev.policy().expect("still a policy");
    assert_eq!((in_force.name.as_str(), in_force.version), ("Default", 1));
    assert!(f.dev.status().camera_disabled);

    // Altered bytes under the right key do not verify either.
    let mut altered = f.domain.sign_policy(&policy("Default", 2, vec![]));
    let mut bytes = altered.policy.to_vec();
    bytes.push(0);
    altered.policy = bytes.into();
    f.server.send(&env(Body::ItPolicy(altered))).await;
    f.sync().await;
    assert!(!f.server.policy_applied().await.applied);
    assert_eq!(f.dev.policy().expect("policy").version, 1);

    // Service books sent again replace those installed.
    f.server
        .send(&env(Body::ServiceBooks(schema::ServiceBooks {
            books: vec![
                schema::ServiceBook {
                    cid: "CMIME".into(),
                    name: "Desktop [S1]".into(),
                    ..Default::default()
                },
                schema::ServiceBook {
                    cid: "IPPP".into(),
                    name: "IPPP [S1]".into(),
                    ..Default::default()
                },
            ],
        })))
        .await;
    f.sync().await;
    let cids = f
        .server
        .expect("ServiceBooksReceived", |b| match b {
            Body::ServiceBooksReceived(r) => Some(r.cids),
            _ => None,
        })
        .await;
    assert_eq!(cids, ["CMIME", "IPPP"]);
    assert_eq!(f.dev.profile().expect("profile").service_books.len(), 2);
    f.shutdown().await;
}

#[tokio::test]
async fn the_administrator_locks_and_a_repeat_is_answered_not_carried_out_again() {
    let mut f = Fixture::new().await;
    f.server
        .send(&command(
            7,
            Command::Lock(schema::LockDevice {
                new_password: "by-admin-1".into(),
            }),
        ))
        .await;
    let report = f.sync().await;
    assert!(
        report
            .managed
            .contains(&ManageEvent::Locked { new_password: true }),
        "{report:?}"
    );
    let r = f.server.result(7).await;
    assert_eq!(r.state, CommandState::CommandDone as i32);
    assert!(f.dev.is_locked() && f.dev.has_password());
    assert!(matches!(f.dev.set_password("x"), Err(DeviceError::Locked)));
    assert!(matches!(
        f.dev.install_local_app("A", "1", b""),
        Err(DeviceError::Locked)
    ));

    // Locked survives a restart.
    let home = f.home();
    let store = std::mem::replace(&mut f.store, MailStore::open(None).await.expect("mem"));
    store.close().await;
    drop(std::mem::replace(
        &mut f.dev,
        Device::in_memory().expect("mem"),
    ));
    f.dev = Device::open(&home).expect("reopens");
    f.store = f.dev.mail_store().await.expect("store");
    assert!(f.dev.is_locked());

    let wrong = f.dev.unlock("nope").expect_err("wrong");
    assert!(
        matches!(wrong, DeviceError::WrongDevicePassword { attempts_left: 9 }),
        "{wrong:?}"
    );
    assert!(
        wrong.to_string().contains("9 more wrong passwords"),
        "{wrong}"
    );
    assert_eq!(f.dev.status().failed_password_attempts, 1);
    f.dev.unlock("by-admin-1").expect("unlocks");
    assert!(!f.dev.is_locked());
    assert_eq!(f.dev.status().failed_password_attempts, 0);

    // The server did not hear the answer (say) and sends the command again: answered the
    // same, and the device is not locked a second time.
    f.server
        .send(&command(
            7,
            Command::Lock(schema::LockDevice {
                new_password: "by-admin-2".into(),
            }),
        ))
        .await;
    let report = f.sync().await;
    assert!(
        report
            .managed
            .contains(&ManageEvent::CommandRepeated { command_id: 7 }),
        "{report:?}"
    );
    assert_eq!(f.server.result(7).await, r);
    assert!(!f.dev.is_locked());
    f.dev.lock().expect("the user locks");
    f.dev
        .unlock("by-admin-1")
        .expect("the first password still");

    // An unknown command fails in words.
    f.server
        .send(&env(Body::ItCommand(ItCommand {
            command_id: 8,
            command: None,
        })))
        .await;
    f.sync().await;
    let r = f.server.result(8).await;
    assert_eq!(r.state, CommandState::CommandFailed as i32);
    assert!(r.detail.contains("does not know that command"), "{r:?}");
    f.shutdown().await;
}

#[tokio::test]
async fn too_many_wrong_passwords_wipe_the_device() {
    let mut f = Fixture::new().await;
    f.apply_policy(&policy(
        "Advanced Security",
        1,
        vec![number("max_password_attempts", 3)],
    ))
    .await;
    f.dev.set_password("right-1").expect("set");
    f.store
        .handle(&mail_item(1))
        .await
        .expect("a message is stored");
    f.store.close().await;
    f.dev.lock().expect("locks");
    let pin = f.dev.pin();
    for left in [2, 1] {
        assert!(matches!(
            f.dev.unlock("wrong"),
            Err(DeviceError::WrongDevicePassword { attempts_left }) if attempts_left == left
        ));
    }
    let wiped = f.dev.unlock("wrong").expect_err("wiped");
    assert!(matches!(wiped, DeviceError::Wiped(_)), "{wiped:?}");
    assert!(!f.home().join(mail::MAIL_DB).exists());
    assert_eq!(f.dev.server(), None);
    assert!(f.dev.profile().is_none() && !f.dev.is_locked() && !f.dev.has_password());
    assert_eq!(f.dev.pin(), pin);
    f.relay.shutdown().await;
}

#[tokio::test]
async fn a_wipe_now_answers_done_then_deletes_everything_but_the_identity() {
    let mut f = Fixture::new().await;
    f.dev.set_password("1234").expect("set");
    f.dev
        .install_local_app("Notes", "2.0", b"notes")
        .expect("installed");
    f.server.send(&mail_item(5)).await;
    f.sync().await;
    assert_eq!(f.store.inbox().await.expect("inbox").len(), 1);
    let pin = f.dev.pin();
    f.server
        .send(&command(
            11,
            Command::Wipe(schema::WipeDevice {
                delay_hours: 0,
                user_may_cancel: false,
            }),
        ))
        .await;
    f.server.send(&mail_item(6)).await;
    let report = f.sync().await;
    assert!(report.ended, "{report:?}");
    assert!(report.managed.contains(&ManageEvent::Wiped));
    let r = f.server.result(11).await;
    assert_eq!(r.state, CommandState::CommandDone as i32);

    let home = f.home();
    assert!(!home.join(mail::MAIL_DB).exists(), "the mail store is gone");
    assert!(!home.join("apps").exists());
    let mut left: Vec<String> = std::fs::read_dir(&home)
        .expect("home")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["identity.pkcs8", "lock", "state.json"]);
    assert_eq!(f.dev.server(), None);
    assert!(f.dev.profile().is_none() && !f.dev.has_password() && f.dev.apps().is_empty());
    assert_eq!(f.dev.status().relay, None);
    assert_eq!(f.dev.pin(), pin);
    drop(f.dev);
    let again = Device::open(&home).expect("reopens");
    assert_eq!(again.pin(), pin);
    assert_eq!(again.server(), None);
    f.relay.shutdown().await;
}

#[tokio::test]
async fn a_delayed_wipe_is_pending_and_the_user_may_cancel_it_when_allowed() {
    let mut f = Fixture::new().await;
    let before = manage::now_ms();
    f.server
        .send(&command(
            21,
            Command::Wipe(schema::WipeDevice {
                delay_hours: 2,
                user_may_cancel: true,
            }),
        ))
        .await;
    f.sync().await;
    let r = f.server.result(21).await;
    assert_eq!(r.state, CommandState::CommandPending as i32);
    assert!(
        r.due_at_ms >= before + 2 * 3_600_000 && r.due_at_ms <= manage::now_ms() + 2 * 3_600_000
    );
    let w = f.dev.scheduled_wipe().expect("scheduled");
    assert_eq!(
        (w.command_id, w.due_at_ms, w.may_cancel),
        (21, r.due_at_ms, true)
    );
    assert_eq!(f.dev.status().scheduled_wipe, Some(w));
    // Not due yet: nothing happens.
    assert!(!f.dev.wipe_if_due(w.due_at_ms - 1).expect("checked"));

    // Sent again: the same answer.
    f.server
        .send(&command(
            21,
            Command::Wipe(schema::WipeDevice {
                delay_hours: 2,
                user_may_cancel: true,
            }),
        ))
        .await;
    f.sync().await;
    assert_eq!(f.server.result(21).await, r);

    let cancelled = f.dev.cancel_wipe().expect("cancelled");
    assert_eq!(cancelled.command_id, 21);
    assert_eq!(f.dev.scheduled_wipe(), None);
    assert!(matches!(
        f.dev.cancel_wipe(),
        Err(DeviceError::NoWipeScheduled)
    ));
    f.sync().await;
    let r = f.server.result(21).await;
    assert_eq!(r.state, CommandState::CommandCancelled as i32);

    // One the user may not cancel is carried out when due, DONE first.
    f.server
        .send(&command(
            22,
            Command::Wipe(schema::WipeDevice {
                delay_hours: 1,
                user_may_cancel: false,
            }),
        ))
        .await;
    f.sync().await;
    assert_eq!(
        f.server.result(22).await.state,
        CommandState::CommandPending as i32
    );
    let refused = f.dev.cancel_wipe().expect_err("not allowed");
    assert!(
        matches!(refused, DeviceError::WipeNotCancellable { .. }),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("does not allow"), "{refused}");
    let due = f.dev.scheduled_wipe().expect("scheduled").due_at_ms;
    let mut conn = within("connect", f.dev.connect()).await.expect("connects");
    assert!(
        manage::run_due(&mut conn, &f.store, due - 1)
            .await
            .expect("checked")
            .is_none()
    );
    let events = manage::run_due(&mut conn, &f.store, due + 1)
        .await
        .expect("wiped")
        .expect("due");
    assert_eq!(events, [ManageEvent::Wiped]);
    conn.close().await;
    assert_eq!(
        f.server.result(22).await.state,
        CommandState::CommandDone as i32
    );
    assert!(!f.home().join(mail::MAIL_DB).exists());
    assert_eq!(f.dev.server(), None);
    f.relay.shutdown().await;
}

#[tokio::test]
async fn a_device_opened_after_its_wipe_was_due_wipes_itself() {
    let mut f = Fixture::new().await;
    f.server
        .send(&command(
            31,
            Command::Wipe(schema::WipeDevice {
                delay_hours: 1,
                user_may_cancel: false,
            }),
        ))
        .await;
    f.sync().await;
    let due = f.dev.scheduled_wipe().expect("scheduled").due_at_ms;
    f.store.close().await;
    assert!(!f.dev.wipe_if_due(due - 1).expect("checked"));
    // The phone is off when the time comes (the state says it is due already).
    let home = f.home();
    drop(f.dev);
    let state = home.join(bramble_device::STATE_FILE);
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state).expect("state")).expect("json");
    assert_eq!(json["manage"]["scheduled_wipe"]["due_at_ms"], due);
    json["manage"]["scheduled_wipe"]["due_at_ms"] = 1.into();
    std::fs::write(&state, serde_json::to_vec(&json).expect("json")).expect("written");
    let dev = Device::open(&home).expect("opens");
    assert!(dev.wiped_when_opened());
    assert_eq!(dev.server(), None);
    assert!(!home.join(mail::MAIL_DB).exists());
    f.relay.shutdown().await;
}

#[tokio::test]
async fn removing_the_organization_data_keeps_the_phone_and_its_own_things() {
    let mut f = Fixture::new().await;
    f.apply_policy(&policy("Default", 1, vec![])).await;
    f.dev.set_password("mine-1").expect("set");
    f.dev
        .install_local_app("Mine", "1.0", b"my own")
        .expect("installed");
    f.server.send(&mail_item(9)).await;
    f.sync().await;
    let relay = f.dev.status().relay;
    f.server
        .send(&command(
            41,
            Command::RemoveOrgData(schema::RemoveOrgData {}),
        ))
        .await;
    let report = f.sync().await;
    assert!(report.ended && report.managed.contains(&ManageEvent::OrganizationRemoved));
    assert_eq!(
        f.server.result(41).await.state,
        CommandState::CommandDone as i32
    );
    assert!(!f.home().join(mail::MAIL_DB).exists());
    assert_eq!(f.dev.server(), None);
    assert!(f.dev.profile().is_none() && f.dev.policy().is_none());
    assert!(f.dev.has_password());
    assert_eq!(f.dev.status().relay, relay);
    assert_eq!(f.dev.apps().len(), 1);
    assert_eq!(f.dev.app_package("Mine").expect("kept"), b"my own");
    f.relay.shutdown().await;
}

#[tokio::test]
async fn a_regenerated_key_is_used_once_the_server_uses_it_and_the_old_one_is_refused() {
    let mut f = Fixture::new().await;
    assert_eq!(f.dev.key_generation(), 1);
    let first = KeyExchange::new().expect("half");
    let first_public = first.public_key();
    let regenerate = |public: [u8; 32]| {
        command(
            51,
            Command::RegenerateKey(schema::RegenerateKey {
                key_generation: 2,
                server_public: public.to_vec().into(),
            }),
        )
    };
    f.server.send(&regenerate(first_public)).await;
    let report = f.sync().await;
    assert!(
        report
            .managed
            .contains(&ManageEvent::KeyExchanged { key_generation: 2 })
    );
    let r = f.server.result(51).await;
    assert_eq!(r.state, CommandState::CommandDone as i32);
    assert_eq!(r.device_public.len(), 32);
    assert!(f.dev.status().key_regeneration_pending);
    assert_eq!(f.dev.key_generation(), 1);

    // The same command again (the answer was lost): the same answer.
    f.server.send(&regenerate(first_public)).await;
    f.sync().await;
    assert_eq!(f.server.result(51).await, r);

    // The server restarted and made a new exchange: a new answer, the pending key replaced.
    let second = KeyExchange::new().expect("half");
    f.server.send(&regenerate(second.public_key())).await;
    f.sync().await;
    let r2 = f.server.result(51).await;
    assert_eq!(r2.state, CommandState::CommandDone as i32);
    assert_ne!(r2.device_public, r.device_public);
    let next = second
        .next_key(&r2.device_public, &f.key, f.dev.pin(), 2)
        .expect("next key");

    // Still the old key until the server uses the new one.
    f.server.send(&crate::ping("old key, before")).await;
    f.sync().await;
    f.server
        .expect("pong", |b| matches!(b, Body::Pong(_)).then_some(()))
        .await;

    let old = std::mem::replace(
        &mut f.server.session,
        Session::server(&next, 1..1_000_000, 0).expect("session"),
    );
    f.server
        .send(&env(Body::KeyConfirmation(schema::KeyConfirmation {
            key_generation: 2,
        })))
        .await;
    let report = f.sync().await;
    assert!(
        report
            .managed
            .contains(&ManageEvent::KeyRegenerated { key_generation: 2 }),
        "{report:?}"
    );
    assert_eq!(f.dev.key_generation(), 2);
    assert!(!f.dev.status().key_regeneration_pending);
    // Its answer is sealed under the new key.
    let k = f
        .server
        .expect("key confirmation", |b| match b {
            Body::KeyConfirmation(k) => Some(k),
            _ => None,
        })
        .await;
    assert_eq!(k.key_generation, 2);

    // A frame under the old key no longer opens.
    let new = std::mem::replace(&mut f.server.session, old);
    f.server.send(&crate::ping("old key, after")).await;
    f.server.session = new;
    f.server.send(&crate::ping("new key")).await;
    let mut conn = within("connect", f.dev.connect()).await.expect("connects");
    let first_item = within("recv", conn.recv()).await.expect("received");
    assert!(
        matches!(first_item, Incoming::Rejected { .. }),
        "{first_item:?}"
    );
    let second_item = within("recv", conn.recv()).await.expect("received");
    assert!(
        matches!(&second_item, Incoming::Envelope { env, .. } if matches!(&env.body, Some(Body::Ping(p)) if p.note == "new key")),
        "{second_item:?}"
    );
    conn.close().await;
    let pong = f
        .server
        .expect("pong", |b| match b {
            Body::Pong(p) => Some(p.note),
            _ => None,
        })
        .await;
    assert_eq!(pong, "new key");

    // And after a restart the new key is the one kept.
    let home = f.home();
    f.store.close().await;
    drop(f.dev);
    let dev = Device::open(&home).expect("reopens");
    assert_eq!(dev.key_generation(), 2);
    f.relay.shutdown().await;
}

/// Serves packages until the report for `job_id` arrives; returns it and the requests seen.
async fn serve_packages(
    server: &mut Server,
    job_id: u64,
    packages: &[(&str, &str, Vec<u8>)],
) -> (schema::SoftwareReport, Vec<schema::AppPackageRequest>) {
    let mut requests = Vec::new();
    loop {
        match server.recv().await.body {
            Some(Body::SoftwareReport(r)) if r.job_id == job_id => return (r, requests),
            Some(Body::AppPackageRequest(req)) => {
                let Some((_, _, bytes)) = packages
                    .iter()
                    .find(|(n, v, _)| *n == req.name && *v == req.version)
                else {
                    server
                        .send(&env(Body::AppPackageChunk(schema::AppPackageChunk {
                            job_id: req.job_id,
                            name: req.name.clone(),
                            version: req.version.clone(),
                            error: "no such package".into(),
                            ..Default::default()
                        })))
                        .await;
                    requests.push(req);
                    continue;
                };
                let from = usize::try_from(req.offset).expect("offset");
                for (n, piece) in bytes[from..].chunks(1000).enumerate() {
                    server
                        .send(&env(Body::AppPackageChunk(schema::AppPackageChunk {
                            job_id: req.job_id,
                            name: req.name.clone(),
                            version: req.version.clone(),
                            offset: (from + n * 1000) as u64,
                            total: bytes.len() as u64,
                            data: piece.to_vec().into(),
                            error: String::new(),
                        })))
                        .await;
                }
                requests.push(req);
            }
            _ => {}
        }
    }
}

fn rule(name: &str, version: &str, d: AppDisposition, bytes: &[u8]) -> schema::AppRule {
    schema::AppRule {
        name: name.into(),
        version: version.into(),
        disposition: d.into(),
        size: bytes.len() as u64,
        sha256: sha256(bytes).to_vec().into(),
    }
}

fn states(r: &schema::SoftwareReport) -> Vec<(String, AppState)> {
    let mut v: Vec<(String, AppState)> =
        r.apps.iter().map(|a| (a.name.clone(), a.state())).collect();
    v.sort();
    v
}

#[tokio::test]
async fn software_is_installed_checked_and_removed_as_the_configuration_says() {
    let mut f = Fixture::new().await;
    let foo: Vec<u8> = (0..2500u32).map(|i| (i * 7 % 251) as u8).collect();
    let bar = b"bar package".to_vec();
    f.dev
        .install_local_app("Evil", "0.1", b"evil")
        .expect("installed");
    f.dev
        .install_local_app("Mine", "1.0", b"mine")
        .expect("installed");
    let config = env(Body::SoftwareConfig(schema::SoftwareConfig {
        job_id: 61,
        name: "Sales phones".into(),
        allow_unlisted: false,
        apps: vec![
            rule("Foo", "1.2", AppDisposition::AppRequired, &foo),
            rule("Bar", "2.0", AppDisposition::AppOptional, &bar),
            schema::AppRule {
                name: "Evil".into(),
                disposition: AppDisposition::AppNotPermitted.into(),
                ..Default::default()
            },
        ],
    }));
    f.server.send(&config).await;
    let packages = [("Foo", "1.2", foo.clone())];
    let (report, requests, sync) = {
        let (server, store) = (&mut f.server, &f.store);
        let mut conn = within("connect", f.dev.connect()).await.expect("connects");
        let (served, synced) = within("software", async {
            tokio::join!(
                serve_packages(server, 61, &packages),
                mail::sync(&mut conn, store, Duration::from_secs(2))
            )
        })
        .await;
        conn.close().await;
        (served.0, served.1, synced.expect("synced"))
    };
    assert_eq!(requests.len(), 1);
    assert_eq!((requests[0].name.as_str(), requests[0].offset), ("Foo", 0));
    assert_eq!(
        states(&report),
        [
            ("Bar".to_owned(), AppState::AppAvailable),
            ("Evil".to_owned(), AppState::AppRemoved),
            ("Foo".to_owned(), AppState::AppInstalled),
            ("Mine".to_owned(), AppState::AppRemoved),
        ]
    );
    assert_eq!(report.installed, ["Foo 1.2"]);
    assert!(sync.managed.contains(&ManageEvent::AppInstalled {
        name: "Foo".into(),
        version: "1.2".into()
    }));
    let apps = f.dev.apps();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].source, AppSource::Organization);
    assert_eq!(apps[0].sha256, hex::encode(sha256(&foo)));
    let path = f.dev.app_package_path("Foo").expect("a file");
    assert_eq!(std::fs::read(&path).expect("package"), foo, "byte for byte");
    assert_eq!(f.dev.available_apps().len(), 1);

    // What the configuration says stands: no unlisted apps, the required one stays.
    let refused = f
        .dev
        .install_local_app("Other", "1", b"")
        .expect_err("unlisted");
    assert!(refused.to_string().contains("allows only"), "{refused}");
    let refused = f.dev.remove_app("Foo").expect_err("required");
    assert!(
        matches!(refused, DeviceError::AppRemoveRefused(_)),
        "{refused:?}"
    );
    assert!(matches!(
        f.dev.remove_app("Nope"),
        Err(DeviceError::NoSuchApp(_))
    ));

    // The same job again: the same report, nothing fetched.
    f.server.send(&config).await;
    f.sync().await;
    let again = f
        .server
        .expect("report", |b| match b {
            Body::SoftwareReport(r) => Some(r),
            _ => None,
        })
        .await;
    assert_eq!(again, report);

    // A package that does not match its SHA-256, one the server cannot give, one too large.
    let mut bad = rule("Baz", "1.0", AppDisposition::AppRequired, b"the real bytes");
    bad.sha256 = sha256(b"other bytes").to_vec().into();
    let mut huge = rule("Huge", "1", AppDisposition::AppRequired, b"");
    huge.size = manage::MAX_PACKAGE + 1;
    f.server
        .send(&env(Body::SoftwareConfig(schema::SoftwareConfig {
            job_id: 62,
            name: "Sales phones".into(),
            allow_unlisted: true,
            apps: vec![
                rule("Foo", "1.2", AppDisposition::AppRequired, &foo),
                bad,
                rule("Gone", "1.0", AppDisposition::AppRequired, b"gone"),
                huge,
            ],
        })))
        .await;
    let packages = [("Baz", "1.0", b"the real bytes".to_vec())];
    let report = {
        let (server, store) = (&mut f.server, &f.store);
        let mut conn = within("connect", f.dev.connect()).await.expect("connects");
        let (served, synced) = within("software", async {
            tokio::join!(
                serve_packages(server, 62, &packages),
                mail::sync(&mut conn, store, Duration::from_secs(2))
            )
        })
        .await;
        conn.close().await;
        synced.expect("synced");
        served.0
    };
    assert_eq!(
        states(&report),
        [
            ("Baz".to_owned(), AppState::AppFailed),
            ("Foo".to_owned(), AppState::AppPresent),
            ("Gone".to_owned(), AppState::AppFailed),
            ("Huge".to_owned(), AppState::AppFailed),
        ]
    );
    let detail = |n: &str| {
        report
            .apps
            .iter()
            .find(|a| a.name == n)
            .map(|a| a.detail.clone())
            .unwrap_or_default()
    };
    assert!(detail("Baz").contains("SHA-256"), "{}", detail("Baz"));
    assert!(
        detail("Gone").contains("no such package"),
        "{}",
        detail("Gone")
    );
    assert!(detail("Huge").contains("larger"), "{}", detail("Huge"));
    assert_eq!(report.installed, ["Foo 1.2"]);
    let files: Vec<_> = std::fs::read_dir(f.home().join("apps"))
        .expect("apps")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(files.len(), 1, "only Foo's package is left: {files:?}");

    // Unlisted applications are allowed now.
    f.dev
        .install_local_app("Other", "1", b"o")
        .expect("installed");
    f.shutdown().await;
}

#[tokio::test]
async fn hostile_policy_service_messages_are_answered_in_words_and_never_panic() {
    let mut f = Fixture::new().await;
    // Pieces for nothing being fetched, a key regeneration with a bad key, an old generation,
    // a message meant for the server, a huge delay.
    f.server
        .send(&env(Body::AppPackageChunk(schema::AppPackageChunk {
            job_id: 1,
            name: "X".into(),
            data: vec![0; 100].into(),
            total: 5,
            ..Default::default()
        })))
        .await;
    f.server
        .send(&command(
            71,
            Command::RegenerateKey(schema::RegenerateKey {
                key_generation: 2,
                server_public: vec![1, 2, 3].into(),
            }),
        ))
        .await;
    f.server
        .send(&command(
            72,
            Command::RegenerateKey(schema::RegenerateKey {
                key_generation: 1,
                server_public: KeyExchange::new()
                    .expect("half")
                    .public_key()
                    .to_vec()
                    .into(),
            }),
        ))
        .await;
    f.server
        .send(&env(Body::CommandResult(schema::CommandResult::default())))
        .await;
    f.server
        .send(&command(
            73,
            Command::Wipe(schema::WipeDevice {
                delay_hours: u32::MAX,
                user_may_cancel: true,
            }),
        ))
        .await;
    let long_name = "n".repeat(10_000);
    f.server
        .send(&env(Body::SoftwareConfig(schema::SoftwareConfig {
            job_id: 74,
            name: long_name.clone(),
            allow_unlisted: true,
            apps: vec![
                schema::AppRule {
                    name: long_name.clone(),
                    disposition: AppDisposition::AppRequired.into(),
                    ..Default::default()
                },
                schema::AppRule {
                    name: "../../state.json".into(),
                    version: "1".into(),
                    disposition: AppDisposition::AppRequired.into(),
                    size: 3,
                    sha256: vec![0; 31].into(),
                },
            ],
        })))
        .await;
    let report = f.sync().await;
    assert!(!report.ended, "{report:?}");
    let r = f.server.result(71).await;
    assert_eq!(r.state, CommandState::CommandFailed as i32);
    assert!(r.detail.contains("not usable"), "{r:?}");
    let r = f.server.result(72).await;
    assert_eq!(r.state, CommandState::CommandFailed as i32);
    assert!(r.detail.contains("not above"), "{r:?}");
    let r = f.server.result(73).await;
    assert_eq!(r.state, CommandState::CommandPending as i32);
    assert!(r.due_at_ms > manage::now_ms());
    let sw = f
        .server
        .expect("report", |b| match b {
            Body::SoftwareReport(r) => Some(r),
            _ => None,
        })
        .await;
    assert_eq!(sw.apps.len(), 2);
    assert!(
        sw.apps.iter().all(|a| a.state() == AppState::AppFailed),
        "{sw:?}"
    );
    assert!(f.home().join("state.json").exists());
    assert_eq!(f.dev.key_generation(), 1);
    f.dev.cancel_wipe().expect("cancelled");
    // Mail still works alongside.
    f.server.send(&mail_item(77)).await;
    let report = f.sync().await;
    assert!(
        report
            .events
            .contains(&MailEvent::NewMessage { ref_id: 77 }),
        "{report:?}"
    );
    f.shutdown().await;
}
