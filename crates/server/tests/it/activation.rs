//! Enterprise Activation end to end on the embedded mail store: the relay mails the ETP.DAT
//! into the user's Maildir, the messaging agent finds and removes it, OPAQUE proves the
//! password, the policy service sends the signed IT policy and the service books.

use std::path::Path;
use std::time::Duration;

use bramble_device::activation::{ActivateOptions, Stage};
use bramble_device::{Device, DeviceError};
use bramble_proto::schema;
use bramble_relay::RelayConfig;
use bramble_server::{ServerConfig, ServerEvent};
use bramble_store::{ServerIdentity, Store};
use bramble_testkit::TestDb;

use crate::support::{Result, loopback};

/// A relay delivering activation mail into `DIR/mail`, and a server watching it.
pub(crate) struct Site {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) db: TestDb,
    pub(crate) relay: Option<bramble_relay::RelayHandle>,
    pub(crate) server: Option<bramble_server::ServerHandle>,
    pub(crate) cfg: ServerConfig,
    pub(crate) admin: reqwest::Client,
    /// The administration API's base URL (`http://127.0.0.1:PORT`).
    pub(crate) base: String,
    /// The administration token.
    pub(crate) token: String,
}

impl Site {
    pub(crate) async fn start() -> Result<Site> {
        Site::start_with(|_| {}, |_| {}).await
    }

    pub(crate) async fn start_with(
        relay_cfg: impl FnOnce(&mut RelayConfig),
        server_cfg: impl FnOnce(&mut ServerConfig),
    ) -> Result<Site> {
        let dir = tempfile::tempdir()?;
        let db = TestDb::new().await?;
        let mut rcfg = RelayConfig::with_data_dir(dir.path().join("relay"));
        rcfg.server_listen = loopback();
        rcfg.device_listen = loopback();
        rcfg.mail.maildir = Some(dir.path().join("mail"));
        relay_cfg(&mut rcfg);
        let relay = bramble_relay::start(rcfg).await?;
        let (srp, key) = bramble_relay::srp_add(&dir.path().join("relay"), None).await?;
        let store = Store::open(db.url()).await?;
        store
            .set_server_identity(&ServerIdentity {
                srp_id: srp.get(),
                srp_key: key,
                relay_addr: relay.server_addr().to_string(),
                relay_fingerprint: Some(relay.fingerprint().to_string()),
            })
            .await?;
        let mut cfg = ServerConfig::with_data_dir(dir.path().join("server"));
        cfg.database = Some(db.url().to_owned());
        cfg.admin.listen = loopback();
        cfg.mail.maildir = Some(dir.path().join("mail"));
        cfg.activation.step_timeout = Duration::from_secs(20);
        server_cfg(&mut cfg);
        let server = bramble_server::start(&cfg, store).await?;
        assert!(server.router.wait_up(Duration::from_secs(10)).await);
        let file: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("server/admin.json"))?)?;
        Ok(Site {
            base: file["url"].as_str().ok_or("url")?.to_owned(),
            token: file["token"].as_str().ok_or("token")?.to_owned(),
            admin: reqwest::Client::new(),
            dir,
            db,
            relay: Some(relay),
            server: Some(server),
            cfg,
        })
    }

    /// Stops the server and starts it again on the same database and data directory.
    pub(crate) async fn restart_server(&mut self) -> Result {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        let store = Store::open(self.db.url()).await?;
        let server = bramble_server::start(&self.cfg, store).await?;
        assert!(server.router.wait_up(Duration::from_secs(10)).await);
        self.server = Some(server);
        Ok(())
    }

    pub(crate) fn server(&self) -> &bramble_server::ServerHandle {
        self.server.as_ref().expect("running")
    }

    pub(crate) async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let mut req = self
            .admin
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            return Err(format!("{path}: {status}: {text}").into());
        }
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    pub(crate) async fn user(&self, email: &str, password: Option<&str>) -> Result {
        self.api(
            reqwest::Method::POST,
            "/users",
            Some(serde_json::json!({ "email": email })),
        )
        .await?;
        if let Some(pw) = password {
            self.set_password(email, pw, "48h").await?;
        }
        Ok(())
    }

    pub(crate) async fn set_password(&self, email: &str, pw: &str, expires: &str) -> Result {
        self.api(
            reqwest::Method::POST,
            &format!("/users/{email}/activation-password"),
            Some(serde_json::json!({ "password": pw, "expires": expires })),
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn show(&self, email: &str) -> Result<serde_json::Value> {
        self.api(reqwest::Method::GET, &format!("/users/{email}"), None)
            .await
    }

    pub(crate) fn device(&self, name: &str) -> Result<Device> {
        let mut d = Device::open(&self.dir.path().join(name))?;
        let relay = self.relay.as_ref().ok_or("relay")?;
        d.set_relay(&relay.device_addr().to_string(), Some(relay.fingerprint()))?;
        Ok(d)
    }

    pub(crate) async fn shutdown(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        if let Some(r) = self.relay.take() {
            r.shutdown().await;
        }
    }
}

/// A site whose relay mails through Postfix and whose server watches Dovecot over IMAP with
/// the service account; `extra` adds uNNNN@example.test users (password `pw`).
async fn dovecot_site(extra: u32) -> Result<(Site, bramble_testkit::mail::MailStack)> {
    dovecot_site_with(extra, |_| {}).await
}

pub(crate) async fn dovecot_site_with(
    extra: u32,
    more: impl FnOnce(&mut ServerConfig),
) -> Result<(Site, bramble_testkit::mail::MailStack)> {
    let stack = tokio::task::spawn_blocking(move || {
        bramble_testkit::mail::MailStack::start(bramble_testkit::mail::MailStackOptions {
            extra_users: extra,
            ..Default::default()
        })
    })
    .await??;
    let (smtp, imap) = (stack.smtp_addr().to_string(), stack.imap_addr().to_string());
    let server_smtp = smtp.clone();
    let site = Site::start_with(
        |r| {
            r.mail.maildir = None;
            r.mail.smtp = Some(smtp);
        },
        |s| {
            s.mail.maildir = None;
            s.mail.imap = Some(imap);
            s.mail.smtp = Some(server_smtp);
            s.mail.service_user = Some("service".into());
            s.mail.service_password = Some("servicepw".into());
            more(s);
        },
    )
    .await?;
    Ok((site, stack))
}

pub(crate) fn opts(secs: u64) -> ActivateOptions {
    ActivateOptions {
        timeout: Duration::from_secs(secs),
        ..ActivateOptions::default()
    }
}

fn mail_files(root: &Path, email: &str) -> usize {
    ["new", "cur"]
        .iter()
        .map(|d| {
            std::fs::read_dir(root.join(email).join("Maildir").join(d))
                .map(|r| r.count())
                .unwrap_or(0)
        })
        .sum()
}

#[tokio::test]
async fn full_activation_shows_every_stage_in_order_and_leaves_no_mail() -> Result {
    let site = Site::start().await?;
    let secret = "Activation-Pw-5c1e";
    site.user("alice@example.com", Some(secret)).await?;
    let mut device = site.device("alice-phone")?;
    let mut stages = Vec::new();
    device
        .activate("alice@example.com", secret, &opts(20), |s| {
            stages.push(s.to_string())
        })
        .await?;
    assert_eq!(
        stages,
        [
            Stage::Activating.to_string(),
            Stage::VerifyingEncryption.to_string(),
            Stage::EncryptionVerified.to_string(),
            Stage::ServicesReceived {
                email: "alice@example.com".into()
            }
            .to_string(),
            Stage::Complete.to_string(),
        ]
    );
    assert_eq!(
        stages[3],
        "Services Received. Your email address, alice@example.com is now enabled."
    );

    let u = site.show("alice@example.com").await?;
    assert_eq!(u["status"], "Completed", "{u}");
    let timeline: Vec<&str> = u["history"]
        .as_array()
        .ok_or("history")?
        .iter()
        .filter_map(|e| e["status"].as_str())
        .collect();
    let wanted = [
        "Initializing",
        "Activating",
        "Verifying Encryption",
        "Waiting for Services",
        "Services Received",
        "Completed",
    ];
    let mut it = timeline.iter();
    for w in wanted {
        assert!(
            it.any(|s| *s == w),
            "{w} missing or out of order in {timeline:?}"
        );
    }
    assert_eq!(u["device"]["pin"], device.pin().to_string());
    assert!(
        !u["has_activation_password"].as_bool().unwrap_or(true),
        "the one-time password is spent"
    );

    // The device pinned the domain key, holds the policy and the seven service books.
    let profile = device.profile().ok_or("profile")?;
    assert_eq!(profile.domain_key.len(), 64);
    assert_eq!(
        profile.policy.as_ref().map(|p| p.name.as_str()),
        Some("Default")
    );
    assert_eq!(profile.service_books.len(), 7);
    // The ETP.DAT mail is gone from the mailbox.
    assert_eq!(
        mail_files(&site.dir.path().join("mail"), "alice@example.com"),
        0
    );

    // All later traffic is sealed with the new key.
    let mut conn = device.connect().await?;
    conn.ping("after activation").await?;
    conn.close().await;
    site.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn failures_are_explained_on_the_device_and_to_the_administrator() -> Result {
    let (site, _stack) = dovecot_site(1).await?;
    // Wrong password: counted.
    site.user("bob@example.test", Some("right-password"))
        .await?;
    let mut d = site.device("bob-phone")?;
    let err = d
        .activate("bob@example.test", "wrong-password", &opts(20), |_| {})
        .await
        .expect_err("refused");
    assert!(matches!(err, DeviceError::WrongPassword), "{err}");
    let u = wait_status(&site, "bob@example.test", "Failed").await?;
    assert!(
        u["status_reason"]
            .as_str()
            .unwrap_or("")
            .contains("wrong activation password (attempt 1 of 5)"),
        "{u}"
    );

    // No password set.
    site.user("carol@example.test", None).await?;
    let mut d = site.device("carol-phone")?;
    let err = d
        .activate("carol@example.test", "anything", &opts(20), |_| {})
        .await
        .expect_err("refused");
    assert!(
        err.to_string().contains("No activation password is set"),
        "{err}"
    );
    let u = site.show("carol@example.test").await?;
    assert!(
        u["status_reason"]
            .as_str()
            .unwrap_or("")
            .contains("no activation password"),
        "{u}"
    );

    // Expired.
    site.user("u0001@example.test", None).await?;
    site.set_password("u0001@example.test", "expiring-pw", "1s")
        .await?;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut d = site.device("dave-phone")?;
    let err = d
        .activate("u0001@example.test", "expiring-pw", &opts(20), |_| {})
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("expired"), "{err}");

    // An address no watched mailbox receives: the device gives up and says what to check.
    let mut d = site.device("erin-phone")?;
    let err = d
        .activate("erin@example.test", "whatever", &opts(2), |_| {})
        .await
        .expect_err("times out");
    assert!(
        matches!(err, DeviceError::ActivationTimeout { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("Check that the email address is right"),
        "{err}"
    );
    site.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn five_wrong_passwords_void_it() -> Result {
    let (site, _stack) = dovecot_site(0).await?;
    site.user("alice@example.test", Some("the-right-one"))
        .await?;
    let mut d = site.device("frank-phone")?;
    for _ in 0..5 {
        let err = d
            .activate("alice@example.test", "nope-nope", &opts(20), |_| {})
            .await
            .expect_err("refused");
        assert!(matches!(err, DeviceError::WrongPassword), "{err}");
    }
    // Even the right password is refused now.
    let err = d
        .activate("alice@example.test", "the-right-one", &opts(20), |_| {})
        .await
        .expect_err("void");
    assert!(err.to_string().contains("too many times"), "{err}");
    site.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn replayed_and_tampered_activation_mails() -> Result {
    let site = Site::start().await?;
    site.user("gina@example.com", Some("gina-password")).await?;
    let mut events = site.server().events();
    let identity = bramble_proto::DeviceIdentity::generate()?;
    let (_state, ke1) = bramble_proto::pake::client_start(b"gina-password")?;
    let etp = bramble_proto::activation::build_etp_dat(
        &identity,
        "gina@example.com",
        &ke1,
        schema::DeviceFacts::default(),
        1,
    )?;
    let root = site.dir.path().join("mail");
    drop_mail(&root, "gina@example.com", &etp, 1)?;
    drop_mail(&root, "gina@example.com", &etp, 2)?;
    // Exactly one activation starts from the two copies.
    let mut starts = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Ok(ev)) = tokio::time::timeout_at(deadline, events.recv()).await {
        if matches!(&ev, ServerEvent::Activation { email, status } if email == "gina@example.com" && status == "Activating")
        {
            starts += 1;
        }
    }
    assert_eq!(starts, 1, "a replayed activation mail was acted on");
    assert_eq!(
        mail_files(&root, "gina@example.com"),
        0,
        "both copies were removed"
    );

    let mut bad = bramble_proto::activation::build_etp_dat(
        &identity,
        "gina@example.com",
        &ke1,
        schema::DeviceFacts::default(),
        2,
    )?;
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    drop_mail(&root, "gina@example.com", &bad, 3)?;
    let u = wait_status(&site, "gina@example.com", "Failed").await?;
    assert!(
        u["status_reason"]
            .as_str()
            .unwrap_or("")
            .contains("refused"),
        "{u}"
    );
    site.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn reactivation_replaces_the_old_device_whose_key_stops_working() -> Result {
    let (site, _stack) = dovecot_site(0).await?;
    site.user("carol@example.test", Some("first-password"))
        .await?;
    let mut old = site.device("hank-old")?;
    old.activate("carol@example.test", "first-password", &opts(20), |_| {})
        .await?;
    site.set_password("carol@example.test", "second-password", "48h")
        .await?;
    let mut new = site.device("hank-new")?;
    new.activate("carol@example.test", "second-password", &opts(20), |_| {})
        .await?;
    let u = site.show("carol@example.test").await?;
    assert_eq!(u["device"]["pin"], new.pin().to_string());
    let mut conn = new.connect().await?;
    conn.ping("new phone").await?;
    conn.close().await;
    // The old device's frames are refused: no answer can come back to it.
    let mut events = site.server().events();
    let pin = old.pin();
    let mut conn = old.connect().await?;
    conn.send(&schema::Envelope {
        version: 1,
        body: Some(schema::envelope::Body::Ping(schema::Ping {
            note: "old".into(),
            sent_at_ms: 0,
        })),
    })
    .await?;
    crate::support::wait_for(
        &mut events,
        "the old device refused",
        |e| matches!(e, ServerEvent::Rejected { pin: p, .. } if *p == pin),
    )
    .await?;
    conn.close().await;
    site.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn fifty_devices_activate_at_once() -> Result {
    let n = 50;
    let (site, _stack) = dovecot_site(n).await?;
    for i in 0..n {
        site.user(
            &format!("u{:04}@example.test", i + 1),
            Some(&format!("password-{i:02}")),
        )
        .await?;
    }
    let relay = site.relay.as_ref().ok_or("relay")?;
    let (addr, fp) = (relay.device_addr().to_string(), relay.fingerprint());
    let mut tasks = Vec::new();
    for i in 0..n {
        let (addr, home) = (addr.clone(), site.dir.path().join(format!("phone-{i:02}")));
        tasks.push(tokio::spawn(async move {
            let mut d = Device::open(&home)?;
            d.set_relay(&addr, Some(fp))?;
            d.activate(
                &format!("u{:04}@example.test", i + 1),
                &format!("password-{i:02}"),
                &opts(60),
                |_| {},
            )
            .await?;
            Ok::<_, DeviceError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    for i in 0..n {
        let u = site.show(&format!("u{:04}@example.test", i + 1)).await?;
        assert_eq!(u["status"], "Completed", "{u}");
    }
    site.shutdown().await;
    Ok(())
}

async fn wait_status(site: &Site, email: &str, status: &str) -> Result<serde_json::Value> {
    for _ in 0..100 {
        let u = site.show(email).await?;
        if u["status"] == status {
            return Ok(u);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!(
        "{email} never reached {status}: {}",
        site.show(email).await?
    )
    .into())
}

/// Delivers a mail carrying `etp` as ETP.DAT into the user's Maildir, as the relay would.
fn drop_mail(root: &Path, email: &str, etp: &[u8], n: u32) -> Result {
    let msg = mail_builder::MessageBuilder::new()
        .from("activation@relay.invalid")
        .to(email)
        .subject("Enterprise Activation request")
        .text_body("activation")
        .attachment("application/octet-stream", "ETP.DAT", etp.to_vec())
        .write_to_vec()?;
    let md = root.join(email).join("Maildir");
    for d in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(md.join(d))?;
    }
    let tmp = md.join("tmp").join(format!("test-{n}"));
    std::fs::write(&tmp, msg)?;
    std::fs::rename(&tmp, md.join("new").join(format!("test-{n}")))?;
    Ok(())
}

/// The real thing: the relay mails ETP.DAT through Postfix into Dovecot; the messaging agent
/// watches the INBOX over IMAP IDLE with the service account and expunges the mail.
#[tokio::test]
async fn activation_through_postfix_and_dovecot_leaves_no_password_anywhere() -> Result {
    let logs = crate::support::init_logs();
    let stack = tokio::task::spawn_blocking(|| {
        bramble_testkit::mail::MailStack::start(bramble_testkit::mail::MailStackOptions::default())
    })
    .await??;
    let (smtp, imap) = (stack.smtp_addr().to_string(), stack.imap_addr().to_string());
    let site = Site::start_with(
        |r| {
            r.mail.maildir = None;
            r.mail.smtp = Some(smtp);
            r.mail.from = "Bramble Activation <activation@relay.example.test>".into();
        },
        |s| {
            s.mail.maildir = None;
            s.mail.imap = Some(imap);
            s.mail.service_user = Some("service".into());
            s.mail.service_password = Some("servicepw".into());
        },
    )
    .await?;
    let secret = "Dovecot-Activation-Pw-91";
    site.user("alice@example.test", Some(secret)).await?;
    let mut device = site.device("alice-phone")?;
    let mut stages = Vec::new();
    device
        .activate("alice@example.test", secret, &opts(30), |s| {
            stages.push(s.to_string())
        })
        .await?;
    assert_eq!(
        stages.last().map(String::as_str),
        Some("Activation Complete"),
        "{stages:?}"
    );
    assert_eq!(
        site.show("alice@example.test").await?["status"],
        "Completed"
    );
    // The ETP.DAT mail was expunged from alice's INBOX (it was the only mail there).
    let md = stack.maildir("alice@example.test");
    let left: usize = ["new", "cur"]
        .iter()
        .map(|d| {
            std::fs::read_dir(md.join(d))
                .map(|r| r.count())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(left, 0, "the activation mail is still in the mailbox");

    // The password is nowhere: not in the server's database, the relay's database and queue,
    // the mail store, or the logs.
    site.server().store().close().await;
    let mut places = vec![site.dir.path().to_owned(), stack.dir().join("mail")];
    if site.db.kind() == bramble_testkit::DbKind::Sqlite {
        let path = site
            .db
            .url()
            .trim_start_matches("sqlite://")
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        if let Some(dir) = Path::new(&path).parent() {
            places.push(dir.to_owned());
        }
    }
    places.retain(|p| p.exists());
    for place in places {
        for file in walk(&place) {
            let bytes = std::fs::read(&file).unwrap_or_default();
            assert!(
                !contains(&bytes, secret.as_bytes()),
                "{} holds the activation password",
                file.display()
            );
        }
    }
    if site.db.kind() == bramble_testkit::DbKind::Postgres {
        // The whole PostgreSQL database, dumped.
        let dump = std::process::Command::new("pg_dump")
            .args(["--data-only", site.db.url()])
            .output()
            .map_err(|e| {
                format!("pg_dump (Debian package postgresql-client) could not run: {e}")
            })?;
        assert!(
            dump.status.success(),
            "pg_dump failed: {}",
            String::from_utf8_lossy(&dump.stderr)
        );
        assert!(dump.stdout.len() > 1000, "the dump holds the data");
        assert!(
            !contains(&dump.stdout, secret.as_bytes()),
            "the PostgreSQL database holds the activation password"
        );
    }
    let captured = logs.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(!captured.is_empty(), "logs were captured");
    assert!(
        !contains(&captured, secret.as_bytes()),
        "the logs hold the activation password"
    );
    site.shutdown().await;
    Ok(())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Without a service account: each user's own mailbox password, set by the administrator,
/// kept encrypted in the configuration database.
#[tokio::test]
async fn activation_with_per_user_mailbox_passwords() -> Result {
    let stack = tokio::task::spawn_blocking(|| {
        bramble_testkit::mail::MailStack::start(bramble_testkit::mail::MailStackOptions::default())
    })
    .await??;
    let (smtp, imap) = (stack.smtp_addr().to_string(), stack.imap_addr().to_string());
    let server_smtp = smtp.clone();
    let site = Site::start_with(
        |r| {
            r.mail.maildir = None;
            r.mail.smtp = Some(smtp);
        },
        |s| {
            s.mail.maildir = None;
            s.mail.imap = Some(imap);
            s.mail.smtp = Some(server_smtp);
            s.mail.per_user = true;
        },
    )
    .await?;
    site.user("bob@example.test", Some("bob-activation"))
        .await?;
    site.api(
        reqwest::Method::PUT,
        "/users/bob@example.test/mail-password",
        Some(serde_json::json!({ "password": "bobpw" })),
    )
    .await?;
    let mut device = site.device("bob-phone")?;
    device
        .activate("bob@example.test", "bob-activation", &opts(30), |_| {})
        .await?;
    assert_eq!(site.show("bob@example.test").await?["status"], "Completed");
    // The mailbox password is stored, but not readable.
    let stored = site.server().store().mail_credentials().await?;
    assert_eq!(stored.len(), 1);
    assert!(!contains(&stored[0].1, b"bobpw"));
    site.shutdown().await;
    Ok(())
}

/// Dovecot's push_notification hook pokes the watcher, so the activation mail is seen without
/// waiting for IMAP IDLE's fixed 500 ms. The times are printed, not asserted (speed goals
/// live in `bramble bench`); the poke itself is checked in the logs.
#[tokio::test]
async fn dovecot_push_hook_pokes_the_watcher() -> Result {
    let logs = crate::support::init_logs();
    let (site, stack) = dovecot_site_with(0, |s| s.mail.push_listen = Some(loopback())).await?;
    let hook = site.server().push_addr().ok_or("the push hook listens")?;
    stack.set_user_push_url(
        "alice@example.test",
        Some(&format!("http://{hook}/dovecot")),
    )?;
    for (user, pw) in [
        ("alice@example.test", "pushed-pw-1"),
        ("bob@example.test", "idle-pw-2"),
    ] {
        site.user(user, Some(pw)).await?;
        let mut d = site.device(&format!("{user}-phone"))?;
        let t = std::time::Instant::now();
        d.activate(user, pw, &opts(20), |_| {}).await?;
        println!(
            "{user}: activation took {:?} ({})",
            t.elapsed(),
            if user.starts_with("alice") {
                "push hook"
            } else {
                "IMAP IDLE only"
            }
        );
    }
    let captured =
        String::from_utf8_lossy(&logs.lock().map(|l| l.clone()).unwrap_or_default()).into_owned();
    assert!(
        captured
            .lines()
            .any(|l| l.contains("poked by the push hook") && l.contains("alice@example.test")),
        "the push hook did not reach alice's watcher"
    );
    site.shutdown().await;
    Ok(())
}
