//! Nothing lost, nothing twice (issue: push mail): `bramble serve` is killed with SIGKILL
//! several times while 200 messages arrive for a phone over SMTP (Postfix into Dovecot) and
//! the phone sends 200 messages of its own; after each kill it is started again on the same
//! database. In the end the phone shows each of the 200 messages exactly once, and the
//! recipient's mailbox holds each of the phone's 200 messages exactly once.
//!
//! The relay runs as a process of its own (`bramble relay`), so only the enterprise server
//! dies; the phone is the device library in this test's process, connected throughout
//! (reconnecting when the relay drops it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bramble_device::Device;
use bramble_device::activation::ActivateOptions;
use bramble_device::mail::{self, Draft, MailKind, OutboxState};
use bramble_testkit::mail::{MailStack, MailStackOptions};

use crate::util::{Background, bramble, field, s, tempdir};

const MESSAGES: usize = 200;
const KILLS: usize = 4;
const SENDER: &str = "u0001@example.test";
const RECIPIENT: &str = "u0002@example.test";

/// The subjects of the messages in a Maildir (new/ and cur/), with how often each occurs.
fn subjects(maildir: &Path, prefix: &str) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for sub in ["new", "cur"] {
        let Ok(rd) = std::fs::read_dir(maildir.join(sub)) else {
            continue;
        };
        for e in rd.filter_map(Result::ok) {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            if let Some(subject) = text
                .lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .filter(|s| s.starts_with(prefix))
            {
                *out.entry(subject.trim().to_owned()).or_insert(0) += 1;
            }
        }
    }
    out
}

fn start_server(root: &Path, config: &Path, n: usize) -> Background {
    let mut serve = Background::start(
        &format!("serve-{n}"),
        root,
        ["serve", "--config", s(config)],
    );
    serve.wait_for("the server's banner", |b| {
        b.stdout().contains("Press Ctrl-C to stop.").then_some(())
    });
    serve
}

fn sigkill(mut serve: Background) {
    let pid = serve.pid();
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -KILL {pid} failed");
    serve.reap();
}

/// The phone: stays connected, stores and answers everything, queues `MESSAGES` messages of
/// its own a few at a time, until `stop`.
async fn phone(mut device: Device, store: mail::MailStore, stop: Arc<AtomicBool>) -> Device {
    let mut queued = 0;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut conn) = device.connect().await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if mail::send_pending(&mut conn, &store).await.is_err() {
            continue;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        // what has no answer yet is sent again now and then (an answer, or the frame itself,
        // may have been lost with the server)
        let mut resend = tokio::time::interval(Duration::from_secs(5));
        resend.tick().await;
        loop {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            tokio::select! {
                item = conn.recv() => match item {
                    Ok(item) => {
                        if mail::handle_and_answer(&mut conn, &store, &item).await.is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                },
                _ = tick.tick() => {
                    if queued < MESSAGES {
                        for _ in 0..3 {
                            if queued == MESSAGES {
                                break;
                            }
                            let draft = Draft {
                                kind: MailKind::MailNew,
                                to: vec![RECIPIENT.into()],
                                subject: format!("out {queued:03}"),
                                body: format!("Message {queued} from the phone."),
                                ..Draft::default()
                            };
                            let submit = store.compose(&draft).await.expect("the outbox takes a message");
                            queued += 1;
                            let env = bramble_proto::schema::Envelope {
                                version: 1,
                                body: Some(bramble_proto::schema::envelope::Body::MailSubmit(submit)),
                            };
                            if conn.send(&env).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                _ = resend.tick() => {
                    if mail::send_pending(&mut conn, &store).await.is_err() {
                        break;
                    }
                }
            }
        }
        conn.close().await;
    }
    device
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_nothing_and_sends_nothing_twice() {
    let stack = tokio::task::spawn_blocking(|| {
        MailStack::start(MailStackOptions {
            extra_users: 3,
            ..Default::default()
        })
    })
    .await
    .expect("join")
    .expect("the mail stack starts (Dovecot and Postfix; scripts/test installs them)");
    let db = bramble_testkit::TestDb::new()
        .await
        .expect("a test database");
    let tmp = tempdir();
    let root = tmp.path().to_owned();

    // the relay, on its own
    let rdir = root.join("relay");
    let relay_cfg = root.join("relay.toml");
    std::fs::write(
        &relay_cfg,
        format!(
            "[relay.mail]\nsmtp = \"{}\"\nfrom = \"Bramble <activation@example.test>\"\n",
            stack.smtp_addr()
        ),
    )
    .expect("writing relay.toml");
    let mut relay = Background::start(
        "relay",
        &root,
        [
            "relay",
            "--config",
            s(&relay_cfg),
            "--data",
            s(&rdir),
            "--server-listen",
            "127.0.0.1:0",
            "--device-listen",
            "127.0.0.1:0",
        ],
    );
    let out = relay.wait_for("the relay's banner", |r| {
        let out = r.stdout();
        out.contains("Press Ctrl-C to stop.").then_some(out)
    });
    let devices = field(&out, "devices connect to")
        .expect("device address")
        .to_owned();
    let servers = field(&out, "servers connect to")
        .expect("server address")
        .to_owned();
    let fingerprint = field(&out, "certificate")
        .and_then(|c| c.split_whitespace().next())
        .expect("fingerprint")
        .to_owned();
    let added = bramble(&root, ["relay", "--data", s(&rdir), "srp", "add", "--json"])
        .success()
        .json();
    let srp_id = added["srp_id"].as_str().expect("srp_id").to_owned();
    let srp_key = added["srp_key"].as_str().expect("srp_key").to_owned();

    // the server, configured for Dovecot + Postfix
    let data = root.join("server");
    let config = root.join("bramble.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = \"{}\"\ndatabase = \"{}\"\nuplink_backoff_min = \"50ms\"\nuplink_backoff_max = \"500ms\"\n\
             [server.admin]\nlisten = \"127.0.0.1:0\"\n\
             [server.uplink]\nrelay = \"{servers}\"\nfingerprint = \"{fingerprint}\"\nsrp_id = \"{srp_id}\"\nsrp_key = \"{srp_key}\"\n\
             [server.mail]\nimap = \"{}\"\nservice_user = \"service\"\nservice_password = \"servicepw\"\nsmtp = \"{}\"\n",
            data.display(),
            db.url(),
            stack.imap_addr(),
            stack.smtp_addr()
        ),
    )
    .expect("writing bramble.toml");
    let mut serve = start_server(&root, &config, 0);
    let admin = |args: &[&str]| {
        let mut all = vec!["admin", "--data", s(&data)];
        all.extend_from_slice(args);
        bramble(&root, all).success()
    };
    admin(&["user", "add", SENDER]);
    admin(&["user", "add", RECIPIENT]);
    admin(&[
        "user",
        "activation-password",
        SENDER,
        "--password",
        "Kill-Test-Pw-1",
    ]);

    let home = root.join("phone");
    let mut device = Device::open(&home).expect("the phone's home");
    device
        .set_relay(&devices, Some(fingerprint.parse().expect("a fingerprint")))
        .expect("set the relay");
    device
        .activate(
            SENDER,
            "Kill-Test-Pw-1",
            &ActivateOptions {
                timeout: Duration::from_secs(30),
                ..ActivateOptions::default()
            },
            |_| {},
        )
        .await
        .expect("the phone activates through Postfix and Dovecot");
    let store = device.mail_store().await.expect("the phone's mail store");

    // the phone runs; mail arrives over SMTP; the server is killed and started again
    let stop = Arc::new(AtomicBool::new(false));
    let phone_task = tokio::spawn(phone(device, store.clone(), stop.clone()));
    let smtp_stack: &'static MailStack = Box::leak(Box::new(stack));
    let smtp = std::thread::spawn(move || {
        for i in 0..MESSAGES {
            let text = format!(
                "From: <carol@example.test>\nTo: <{SENDER}>\nSubject: in {i:03}\nMessage-ID: <in.{i}@kill.test>\n\nMessage {i} to the phone.\n"
            );
            smtp_stack
                .send_mail("carol@example.test", SENDER, &text)
                .expect("Postfix accepts the message");
            std::thread::sleep(Duration::from_millis(40));
        }
    });
    let started = Instant::now();
    for k in 1..=KILLS {
        let pause = Duration::from_millis(1500 + (rand_ms() % 1500));
        tokio::time::sleep(pause).await;
        sigkill(serve);
        println!("kill {k} at {:?}", started.elapsed());
        serve = start_server(&root, &config, k);
    }
    tokio::task::spawn_blocking(move || smtp.join())
        .await
        .expect("join")
        .expect("the SMTP sender finished");

    // settle: everything arrives, everything is sent
    let recipient_maildir = smtp_stack.maildir(RECIPIENT);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let inbox = store.inbox().await.expect("the phone's inbox");
        let outbox = store.outbox().await.expect("the phone's outbox");
        let sent = outbox
            .iter()
            .filter(|e| e.state == OutboxState::Sent)
            .count();
        let arrived = subjects(&recipient_maildir, "out ").len();
        if inbox.len() >= MESSAGES && sent >= MESSAGES && arrived >= MESSAGES {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 120 s: the phone holds {}/{MESSAGES} messages, {sent}/{MESSAGES} of its own are sent, {arrived}/{MESSAGES} arrived\n{}",
            inbox.len(),
            serve.output()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // late duplicates would show up now
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let _device = phone_task.await.expect("the phone's task");

    let inbox = store.inbox().await.expect("the phone's inbox");
    let mut shown: HashMap<String, usize> = HashMap::new();
    for m in &inbox {
        *shown.entry(m.subject.clone()).or_insert(0) += 1;
    }
    assert_eq!(inbox.len(), MESSAGES, "the phone shows each message once");
    for i in 0..MESSAGES {
        assert_eq!(
            shown.get(&format!("in {i:03}")),
            Some(&1),
            "message {i} on the phone"
        );
    }
    let arrived = subjects(&recipient_maildir, "out ");
    for i in 0..MESSAGES {
        assert_eq!(
            arrived.get(&format!("out {i:03}")),
            Some(&1),
            "the phone's message {i} at the recipient: {arrived:?}"
        );
    }
    // what the restarts had to settle, for the record (it differs from run to run)
    let logs: String = (0..=KILLS)
        .map(|n| {
            std::fs::read_to_string(root.join(format!("serve-{n}.stderr"))).unwrap_or_default()
        })
        .collect();
    let recognised = logs.matches("had already reached a recipient").count();
    let resent = logs.matches("sending again a message interrupted").count();
    println!(
        "{KILLS} kills in {:?}: {MESSAGES} messages to the phone shown once each, {MESSAGES} from the phone delivered once each; \
         sends cut short by a kill: {recognised} found at the recipient (not sent again), {resent} sent again",
        started.elapsed()
    );
    drop(serve);
    drop(relay);
    drop(db);
    let _: PathBuf = home;
}

/// A few random milliseconds, without a dependency.
fn rand_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()) / 1000)
        .unwrap_or(0)
}
