//! The messaging agent's mailbox watchers against a real Dovecot + Postfix (its own stack, so
//! no other test's mail gets in the way; each test has its own user) and against Maildirs in
//! temp dirs: activation mails (an `ETP.DAT` attachment) are handed over and removed, other
//! mail is left alone, hostile mail does not stop the watcher, a dropped connection is resumed.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bramble_server::messaging::mailbox::{
    ActivationMail, ImapAuth, ImapConfig, ImapError, MailboxConfig, MailboxSource, MaildirConfig,
    PasswordLookup, WatcherState, Watchers,
};
use bramble_testkit::{MailStack, MailStackOptions};
use mail_builder::MessageBuilder;
use tokio::sync::mpsc;

use crate::support::Result;

const WITHIN: Duration = Duration::from_secs(10);

/// Logs of the watchers on the test's output, filtered by `RUST_LOG` (default: errors only).
fn logs() {
    let _ = crate::support::init_logs();
}

/// This module's own mail stack: alice, bob, carol and u0001…u0005.
async fn stack() -> &'static MailStack {
    logs();
    static STACK: OnceLock<std::result::Result<MailStack, String>> = OnceLock::new();
    let started = tokio::task::spawn_blocking(|| {
        STACK.get_or_init(|| {
            MailStack::start(MailStackOptions {
                extra_users: 5,
                ..Default::default()
            })
            .map_err(|e| format!("{e:#}"))
        })
    })
    .await
    .expect("starting the mail stack");
    match started {
        Ok(s) => s,
        Err(e) => panic!("the mail stack did not start: {e}"),
    }
}

fn imap_config(stack: &MailStack) -> ImapConfig {
    let (user, password) = stack.service_account();
    let mut cfg = ImapConfig::new(
        stack.imap_addr().to_string(),
        ImapAuth::service_account(user, password),
    );
    cfg.backoff_min = Duration::from_millis(100);
    cfg.backoff_max = Duration::from_secs(1);
    cfg.login_retry = Duration::from_secs(1);
    cfg.timeout = Duration::from_secs(10);
    cfg
}

fn imap_watchers(stack: &MailStack) -> (Watchers, mpsc::Receiver<ActivationMail>) {
    let (tx, rx) = mpsc::channel(16);
    let cfg = MailboxConfig::new(MailboxSource::Imap(imap_config(stack)));
    (Watchers::new(cfg, tx), rx)
}

/// Bytes an `ETP.DAT` could hold: every byte value, `n` long.
fn etp(seed: u8, n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A message as the relay sends it: a text part and an `ETP.DAT` attachment.
fn activation_mail(to: &str, subject: &str, etp_dat: &[u8]) -> String {
    MessageBuilder::new()
        .from(("Bramble relay", "relay@relay.example.test"))
        .to(to)
        .subject(subject)
        .message_id(format!("{}@relay.example.test", subject.replace(' ', ".")))
        .text_body("This message activates a handheld. It is removed by the server.")
        .attachment("application/octet-stream", "ETP.DAT", etp_dat)
        .write_to_string()
        .expect("building a message")
}

fn plain_mail(to: &str, subject: &str) -> String {
    format!("From: <carol@example.test>\nTo: <{to}>\nSubject: {subject}\n\nJust mail.\n")
}

async fn send(stack: &'static MailStack, to: &str, message: String) -> Result<Instant> {
    let to = to.to_owned();
    tokio::task::spawn_blocking(move || {
        stack
            .send_mail("relay@relay.example.test", &to, &message)
            .map(|()| Instant::now())
            .map_err(|e| format!("{e:#}"))
    })
    .await?
    .map_err(Into::into)
}

async fn next(rx: &mut mpsc::Receiver<ActivationMail>, what: &str) -> ActivationMail {
    match tokio::time::timeout(WITHIN, rx.recv()).await {
        Ok(Some(m)) => m,
        Ok(None) => panic!("{what}: the watchers' channel closed"),
        Err(_) => panic!("{what}: nothing handed over within {WITHIN:?}"),
    }
}

async fn quiet(rx: &mut mpsc::Receiver<ActivationMail>, for_: Duration) {
    if let Ok(Some(m)) = tokio::time::timeout(for_, rx.recv()).await {
        panic!("unexpected activation mail: {m:?}");
    }
}

/// Logs in as the user (not the service account) and counts the INBOX messages whose subject
/// contains `subject` (`None`: all of them).
async fn count(stack: &MailStack, email: &str, subject: Option<&str>) -> Result<usize> {
    let password = stack
        .users()
        .into_iter()
        .find(|(u, _)| u == email)
        .map(|(_, p)| p)
        .ok_or("unknown user")?;
    let tcp = tokio::net::TcpStream::connect(stack.imap_addr()).await?;
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await?;
    let mut session = client.login(email, &password).await.map_err(|(e, _)| e)?;
    session.select("INBOX").await?;
    let query = match subject {
        Some(s) => format!("SUBJECT \"{s}\""),
        None => "ALL".to_owned(),
    };
    let n = session.uid_search(&query).await?.len();
    session.logout().await?;
    Ok(n)
}

async fn wait_count(
    stack: &MailStack,
    email: &str,
    subject: Option<&str>,
    want: usize,
) -> Result<()> {
    let deadline = Instant::now() + WITHIN;
    loop {
        let n = count(stack, email, subject).await?;
        if n == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{email}: {n} messages {subject:?}, expected {want}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_hands_over_etp_dat_and_removes_only_that_mail() -> Result {
    let stack = stack().await;
    let bob = "bob@example.test";
    let (watchers, mut rx) = imap_watchers(stack);
    assert!(watchers.watch("Bob@Example.test")?);
    assert!(!watchers.watch(bob)?, "a second watch is a no-op");
    assert!(
        watchers.wait_watching(bob, WITHIN).await,
        "{:?}",
        watchers.state(bob)
    );

    send(stack, bob, plain_mail(bob, "normal mail one")).await?;
    let data = etp(1, 700);
    let sent = send(stack, bob, activation_mail(bob, "activation one", &data)).await?;
    let got = next(&mut rx, "first activation mail").await;
    let latency = sent.elapsed();
    eprintln!("IMAP: SMTP accepted -> ActivationMail in {latency:?}");
    assert_eq!(got.etp_dat, data);
    assert_eq!(got.mailbox, bob);
    assert_eq!(got.from.as_deref(), Some("relay@relay.example.test"));
    assert_eq!(
        got.message_id.as_deref(),
        Some("activation.one@relay.example.test")
    );
    assert!(latency < Duration::from_secs(3), "took {latency:?}");

    // two in a row
    let (a, b) = (etp(2, 300), etp(3, 16 * 1024));
    send(stack, bob, activation_mail(bob, "activation two", &a)).await?;
    send(stack, bob, activation_mail(bob, "activation three", &b)).await?;
    let mut got = vec![
        next(&mut rx, "second activation mail").await.etp_dat,
        next(&mut rx, "third activation mail").await.etp_dat,
    ];
    // Postfix may deliver two mails sent back to back in either order
    got.sort();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(got, want);

    // the normal mail stays, the activation mails are gone
    wait_count(stack, bob, Some("activation"), 0).await?;
    assert_eq!(count(stack, bob, Some("normal mail one")).await?, 1);
    quiet(&mut rx, Duration::from_millis(700)).await;
    assert!(watchers.unwatch(bob).await);
    assert_eq!(watchers.state(bob), None);
    watchers.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_finds_a_mail_that_was_waiting_before_the_watch() -> Result {
    let stack = stack().await;
    let carol = "carol@example.test";
    send(stack, carol, plain_mail(carol, "waiting normal")).await?;
    let data = etp(4, 1234);
    send(
        stack,
        carol,
        activation_mail(carol, "waiting activation", &data),
    )
    .await?;
    wait_count(stack, carol, Some("waiting activation"), 1).await?;

    let (watchers, mut rx) = imap_watchers(stack);
    let t0 = Instant::now();
    watchers.watch(carol)?;
    let got = next(&mut rx, "the waiting activation mail").await;
    eprintln!(
        "IMAP: watch() -> waiting ActivationMail in {:?}",
        t0.elapsed()
    );
    assert_eq!(got.etp_dat, data);
    wait_count(stack, carol, Some("waiting activation"), 0).await?;
    assert_eq!(count(stack, carol, Some("waiting normal")).await?, 1);
    watchers.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_hostile_mail_does_not_stop_the_watcher() -> Result {
    let stack = stack().await;
    let user = "u0001@example.test";
    let (tx, mut rx) = mpsc::channel(16);
    let mut cfg = MailboxConfig::new(MailboxSource::Imap(imap_config(stack)));
    cfg.max_message_bytes = 64 * 1024;
    let watchers = Watchers::new(cfg, tx);
    watchers.watch(user)?;
    assert!(watchers.wait_watching(user, WITHIN).await);

    // malformed MIME: a boundary that never comes, an empty one, a part without headers
    let malformed = format!(
        "From: <x@example.test>\nTo: <{user}>\nSubject: hostile malformed\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"outer\"\n\n--outer\n\
         Content-Type: multipart/alternative; boundary=\n\n--\n\n--outer\n\
         Content-Type: application/octet-stream; name=\n\
         Content-Transfer-Encoding: base64\n\n!!!not base64***\n--outer-\n"
    );
    // 8-bit header text and an 8-bit attachment name that is not ETP.DAT
    let eight_bit = format!(
        "From: Jürgen Größe <j@example.test>\nTo: <{user}>\nSubject: hostile 8bit Grüße ÿ\n\
         MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\n\
         Content-Type: text/plain; charset=utf-8\n\nÄÖÜ\n--b\n\
         Content-Type: application/octet-stream; name=\"ÉTP.DAT\"\n\
         Content-Disposition: attachment; filename=\"ÉTP.DAT\"\n\
         Content-Transfer-Encoding: base64\n\nAAEC\n--b--\n"
    );
    // an RFC 2231-encoded name (so the structure cannot rule it out and it is downloaded and
    // parsed), bytes that are not UTF-8 in it, a nested part reusing the outer boundary
    let encoded = format!(
        "From: <x@example.test>\nTo: <{user}>\nSubject: hostile encoded\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"q\"\n\n--q\n\
         Content-Type: application/octet-stream; name*=utf-8''%FF%FE%00ETP\n\
         Content-Disposition: attachment; filename*=utf-8''%C3%89TP.DAT%00\n\
         Content-Transfer-Encoding: base64\n\n////\n--q\n\
         Content-Type: multipart/mixed; boundary=\"q\"\n\n--q--\n"
    );
    // over the message limit (64 KiB here), ETP.DAT and all: not downloaded, left there
    let too_big = activation_mail(user, "hostile too big", &etp(5, 80 * 1024));
    // an ETP.DAT over 16 KiB in a message within the limit: ignored and removed
    let big_etp = activation_mail(user, "hostile big etp", &etp(6, 16 * 1024 + 1));
    for m in [malformed, eight_bit, encoded, too_big, big_etp] {
        send(stack, user, m).await?;
    }
    let good = etp(7, 500);
    send(
        stack,
        user,
        activation_mail(user, "hostile then good", &good),
    )
    .await?;
    let got = next(&mut rx, "the good activation mail after the hostile ones").await;
    assert_eq!(
        got.etp_dat, good,
        "the first mail handed over is the good one"
    );

    wait_count(stack, user, Some("hostile big etp"), 0).await?;
    wait_count(stack, user, Some("hostile then good"), 0).await?;
    for kept in [
        "hostile malformed",
        "hostile 8bit",
        "hostile encoded",
        "hostile too big",
    ] {
        assert_eq!(count(stack, user, Some(kept)).await?, 1, "{kept} is left");
    }
    quiet(&mut rx, Duration::from_millis(700)).await;
    assert_eq!(watchers.state(user), Some(WatcherState::Watching));
    watchers.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_watcher_reconnects_after_the_server_drops_it() -> Result {
    let stack = stack().await;
    let user = "u0002@example.test";
    let (watchers, mut rx) = imap_watchers(stack);
    watchers.watch(user)?;
    let before = etp(8, 100);
    send(stack, user, activation_mail(user, "before kick", &before)).await?;
    assert_eq!(next(&mut rx, "before the kick").await.etp_dat, before);
    assert!(watchers.wait_watching(user, WITHIN).await);

    let conf = stack.dir().join("dovecot/dovecot.conf");
    let out = tokio::process::Command::new("doveadm")
        .arg("-c")
        .arg(&conf)
        .args(["kick", user])
        .output()
        .await?;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains(user),
        "doveadm kick: {} {said} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    let after = etp(9, 100);
    let sent = send(stack, user, activation_mail(user, "after kick", &after)).await?;
    assert_eq!(next(&mut rx, "after the kick").await.etp_dat, after);
    eprintln!(
        "IMAP: after a kick, SMTP accepted -> ActivationMail in {:?}",
        sent.elapsed()
    );
    wait_count(stack, user, Some("kick"), 0).await?;
    let logins = logins(&stack.dir().join("dovecot/dovecot.log"), user)?;
    assert!(logins >= 2, "the watcher logged in again ({logins} logins)");
    quiet(&mut rx, Duration::from_millis(700)).await;
    watchers.shutdown().await;
    Ok(())
}

/// Successful IMAP logins for `user` in Dovecot's log.
fn logins(log: &Path, user: &str) -> Result<usize> {
    let text = std::fs::read_to_string(log)?;
    let needle = format!("Login: user=<{user}>");
    Ok(text.lines().filter(|l| l.contains(&needle)).count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_login_names_what_failed() -> Result {
    let stack = stack().await;
    let alice = "alice@example.test";
    let cfg = imap_config(stack);
    let info = Watchers::check_login(&cfg, alice).await?;
    assert!(
        info.idle && info.uidplus && info.uid_validity.is_some(),
        "{info:?}"
    );

    let mut wrong = cfg.clone();
    wrong.auth = ImapAuth::service_account("service", "not the password");
    let err = Watchers::check_login(&wrong, alice)
        .await
        .expect_err("wrong password");
    let text = err.to_string();
    assert!(err.is_login(), "{text}");
    assert!(
        text.contains("IMAP login for alice@example.test as service failed")
            && text.contains("[server.mail] service account"),
        "{text}"
    );

    // a user that does not exist
    let err = Watchers::check_login(&cfg, "nobody@example.test")
        .await
        .expect_err("no such user");
    eprintln!("check_login for a missing user: {err}");
    assert!(
        err.to_string()
            .contains("check that the user exists on the mail server"),
        "{err}"
    );

    // each user with their own password
    let mut per_user = cfg.clone();
    per_user.auth = ImapAuth::PerUser {
        password_for: PasswordLookup::new(|email| {
            (email == "bob@example.test").then(|| "bobpw".to_owned())
        }),
    };
    Watchers::check_login(&per_user, "bob@example.test").await?;
    let err = Watchers::check_login(&per_user, alice)
        .await
        .expect_err("no password");
    assert!(err.is_login(), "{err}");

    let mut nowhere = cfg.clone();
    nowhere.addr = format!("127.0.0.1:{}", bramble_testkit::free_port());
    let err = Watchers::check_login(&nowhere, alice)
        .await
        .expect_err("no server");
    assert!(matches!(err, ImapError::Unreachable { .. }), "{err}");

    // a watcher with the wrong password keeps saying why
    let (tx, _rx) = mpsc::channel(1);
    let watchers = Watchers::new(MailboxConfig::new(MailboxSource::Imap(wrong)), tx);
    watchers.watch(alice)?;
    let deadline = Instant::now() + WITHIN;
    loop {
        if let Some(WatcherState::Retrying { error, .. }) = watchers.state(alice) {
            assert!(error.contains("as service failed"), "{error}");
            break;
        }
        assert!(Instant::now() < deadline, "{:?}", watchers.state(alice));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watchers.shutdown().await;
    Ok(())
}

fn maildir_watchers(root: &Path) -> (Watchers, mpsc::Receiver<ActivationMail>) {
    logs();
    let (tx, rx) = mpsc::channel(16);
    let cfg = MailboxConfig::new(MailboxSource::Maildir(MaildirConfig::new(root)));
    (Watchers::new(cfg, tx), rx)
}

/// Delivers as a Maildir writer does: into `tmp/`, then renamed into `new/`.
fn deliver_file(maildir: &Path, name: &str, message: &str) -> Result<std::path::PathBuf> {
    let tmp = maildir.join("tmp").join(name);
    let new = maildir.join("new").join(name);
    std::fs::write(&tmp, message.replace('\n', "\r\n"))?;
    std::fs::rename(&tmp, &new)?;
    Ok(new)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maildir_hands_over_etp_dat_and_deletes_the_file() -> Result {
    let dir = tempfile::tempdir()?;
    let email = "dave@example.test";
    let maildir = dir.path().join(email).join("Maildir");
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(maildir.join(sub))?;
    }
    // present before the watch
    let early = etp(10, 400);
    let early_file = deliver_file(
        &maildir,
        "1700000000.M1P1.host",
        &activation_mail(email, "early", &early),
    )?;
    let ordinary = deliver_file(
        &maildir,
        "1700000001.M2P1.host",
        &plain_mail(email, "ordinary"),
    )?;

    let (watchers, mut rx) = maildir_watchers(dir.path());
    watchers.watch("Dave@example.test")?;
    let got = next(&mut rx, "the Maildir mail there before the watch").await;
    assert_eq!((got.etp_dat, got.mailbox.as_str()), (early, email));
    assert!(watchers.wait_watching(email, WITHIN).await);
    assert!(!early_file.exists(), "handed over, so deleted");

    // written while watching
    let data = etp(11, 9000);
    let t0 = Instant::now();
    let file = deliver_file(
        &maildir,
        "1700000002.M3P1.host",
        &activation_mail(email, "while watching", &data),
    )?;
    let got = next(&mut rx, "the Maildir mail written while watching").await;
    eprintln!(
        "Maildir: rename into new/ -> ActivationMail in {:?}",
        t0.elapsed()
    );
    assert_eq!(got.etp_dat, data);
    let deadline = Instant::now() + WITHIN;
    while file.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!file.exists(), "handed over, so deleted");
    assert!(ordinary.exists(), "ordinary mail is left alone");

    // hostile files: over the size limit, an 8-bit mess, a big ETP.DAT; then a good one
    deliver_file(
        &maildir,
        "1700000003.M4P1.host",
        &"x".repeat(1024 * 1024 + 10),
    )?;
    deliver_file(&maildir, "1700000004.M5P1.host", "\u{ff}\u{fe}: \n\n--\n")?;
    let big = deliver_file(
        &maildir,
        "1700000005.M6P1.host",
        &activation_mail(email, "big", &etp(12, 20_000)),
    )?;
    let good = etp(13, 64);
    deliver_file(
        &maildir,
        "1700000006.M7P1.host",
        &activation_mail(email, "good", &good),
    )?;
    assert_eq!(
        next(&mut rx, "the good one after hostile files")
            .await
            .etp_dat,
        good
    );
    assert!(
        !big.exists(),
        "a message with an oversized ETP.DAT is removed"
    );
    assert!(maildir.join("new/1700000003.M4P1.host").exists());
    quiet(&mut rx, Duration::from_millis(300)).await;

    assert!(watchers.unwatch(email).await);
    watchers.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maildir_watcher_sees_what_dovecot_delivers() -> Result {
    // the Maildir layout is Dovecot's: watch the stack's own mail directory
    let stack = stack().await;
    let user = "u0003@example.test";
    // Dovecot makes the Maildir (as vmail) with the first delivery
    send(stack, user, plain_mail(user, "first")).await?;
    wait_count(stack, user, Some("first"), 1).await?;
    let (watchers, mut rx) = maildir_watchers(&stack.dir().join("mail"));
    watchers.watch(user)?;
    assert!(watchers.wait_watching(user, WITHIN).await);
    let data = etp(14, 2048);
    let sent = send(stack, user, activation_mail(user, "via lmtp", &data)).await?;
    assert_eq!(
        next(&mut rx, "the mail Dovecot delivered").await.etp_dat,
        data
    );
    eprintln!(
        "Maildir: SMTP accepted -> ActivationMail in {:?}",
        sent.elapsed()
    );
    wait_count(stack, user, Some("via lmtp"), 0).await?;
    watchers.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_refuses_addresses_that_are_not_mailboxes() -> Result {
    let dir = tempfile::tempdir()?;
    let (watchers, _rx) = maildir_watchers(dir.path());
    for bad in ["", "../etc@x", "a/b@example.test", "nobody"] {
        assert!(watchers.watch(bad).is_err(), "{bad:?}");
    }
    assert!(watchers.watched().is_empty());
    Ok(())
}
