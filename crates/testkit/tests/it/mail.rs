use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bramble_testkit::mail::SHARED_EXTRA_USERS;
use bramble_testkit::{MailStack, MailStackOptions, free_listener};

use crate::imap::Imap;

/// A subject no other test (or earlier run) uses.
fn unique_subject(what: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{what} {}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn message(from: &str, to: &str, subject: &str) -> String {
    format!(
        "From: <{from}>\nTo: <{to}>\nSubject: {subject}\n\nHello from bramble-testkit.\n.a line that starts with a dot\n"
    )
}

/// Logs in and polls INBOX until a message with `subject` is there; returns EXISTS then.
fn wait_for_message(stack: &MailStack, login: &str, password: &str, subject: &str) -> Result<u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut imap = Imap::connect(stack.imap_addr())?;
    imap.login(login, password)?;
    loop {
        let exists = imap.select("INBOX")?;
        if exists > 0 && !imap.search_subject(subject)?.is_empty() {
            imap.logout()?;
            return Ok(exists);
        }
        if Instant::now() > deadline {
            bail!(
                "no message {subject:?} for {login} after 10 s (EXISTS {exists})\n{}",
                stack.log_tails()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn stack_ports(stack: &MailStack) -> [u16; 3] {
    [
        stack.imap_addr().port(),
        stack.smtp_addr().port(),
        stack.lmtp_addr().port(),
    ]
}

#[test]
fn smtp_mail_arrives_in_imap_inbox() -> Result<()> {
    let stack = MailStack::shared();
    let subject = unique_subject("smtp to imap");
    let alice = "alice@example.test";
    stack.send_mail(
        "sender@example.test",
        alice,
        &message("sender@example.test", alice, &subject),
    )?;
    let exists = wait_for_message(stack, alice, "alicepw", &subject)?;
    assert!(exists >= 1);
    // and it is a file in alice's Maildir
    let new = std::fs::read_dir(stack.maildir(alice).join("new"))?.count();
    let cur = std::fs::read_dir(stack.maildir(alice).join("cur"))?.count();
    assert!(new + cur >= 1, "Maildir of {alice} is empty");
    Ok(())
}

#[test]
fn service_account_opens_bobs_mailbox() -> Result<()> {
    let stack = MailStack::shared();
    let bob = "bob@example.test";
    let subject = unique_subject("for bob");
    stack.send_mail(
        "alice@example.test",
        bob,
        &message("alice@example.test", bob, &subject),
    )?;

    let (master, password) = stack.service_account();
    assert_eq!((master, password), ("service", "servicepw"));
    let login = stack.service_login(bob);
    assert_eq!(login, "bob@example.test*service");
    wait_for_message(stack, &login, password, &subject)?;

    // the master user's password, not bob's, opens it; a wrong one does not
    let mut imap = Imap::connect(stack.imap_addr())?;
    let err = imap
        .login(&login, "bobpw")
        .expect_err("bob's password must not work for the service login");
    assert!(
        format!("{err:#}").contains("AUTHENTICATIONFAILED"),
        "{err:#}"
    );
    Ok(())
}

#[test]
fn shared_stack_has_the_extra_users() -> Result<()> {
    let stack = MailStack::shared();
    let users = stack.users();
    assert_eq!(users.len(), 3 + SHARED_EXTRA_USERS as usize);
    assert_eq!(
        users[0],
        ("alice@example.test".to_owned(), "alicepw".to_owned())
    );
    let last = format!("u{SHARED_EXTRA_USERS:04}@example.test");
    assert_eq!(users.last(), Some(&(last.clone(), "pw".to_owned())));
    assert_eq!(stack.domain(), "example.test");

    let mut imap = Imap::connect(stack.imap_addr())?;
    imap.login(&last, "pw")?;
    assert_eq!(imap.select("INBOX")?, 0);
    imap.logout()
}

/// An HTTP endpoint that answers 204 and hands each request body over the channel.
fn push_receiver() -> (String, Receiver<String>) {
    let listener = free_listener();
    let url = format!("http://{}/push", listener.local_addr().expect("local_addr"));
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            if let Ok(body) = read_http_body(conn)
                && tx.send(body).is_err()
            {
                break;
            }
        }
    });
    (url, rx)
}

fn read_http_body(stream: TcpStream) -> std::io::Result<String> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut len = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            len = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let mut stream = stream;
    stream
        .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The first body containing all of `needles`, within 10 s.
fn wait_for_push(rx: &Receiver<String>, needles: &[&str]) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(body) if needles.iter().all(|n| body.contains(n)) => return Ok(body),
            Ok(body) => seen.push(body),
            Err(_) => break,
        }
    }
    bail!("no push callback with {needles:?} within 10 s; got {seen:?}")
}

#[test]
fn per_user_push_url_gets_new_mail_events() -> Result<()> {
    let stack = MailStack::shared();
    let user = format!("u{:04}@example.test", SHARED_EXTRA_USERS - 1);
    let (url, rx) = push_receiver();
    stack.set_user_push_url(&user, Some(&url))?;
    let subject = unique_subject("push");
    stack.send_mail(
        "alice@example.test",
        &user,
        &message("alice@example.test", &user, &subject),
    )?;
    let body = wait_for_push(&rx, &[&subject, "MessageNew"])?;
    assert!(body.contains(&format!(r#""user":"{user}""#)), "{body}");
    assert!(body.contains(r#""mailbox":"INBOX""#), "{body}");
    stack.set_user_push_url(&user, None)?;
    Ok(())
}

#[test]
fn push_url_option_covers_every_user() -> Result<()> {
    let (url, rx) = push_receiver();
    let stack = MailStack::start(MailStackOptions {
        push_url: Some(url),
        ..Default::default()
    })?;
    let carol = "carol@example.test";
    let subject = unique_subject("default push");
    stack.send_mail(
        "bob@example.test",
        carol,
        &message("bob@example.test", carol, &subject),
    )?;
    let body = wait_for_push(&rx, &[&subject])?;
    assert!(body.contains(r#""user":"carol@example.test""#), "{body}");
    Ok(())
}

#[test]
fn two_stacks_run_side_by_side() -> Result<()> {
    let a = MailStack::start(MailStackOptions::default())?;
    let b = MailStack::start(MailStackOptions {
        extra_users: 2,
        ..Default::default()
    })?;
    assert_ne!(a.imap_addr(), b.imap_addr());
    assert_ne!(a.smtp_addr(), b.smtp_addr());
    assert_ne!(a.dir(), b.dir());
    assert_eq!(a.users().len(), 3);
    assert_eq!(b.users().len(), 5);

    let alice = "alice@example.test";
    let subject = unique_subject("only in a");
    a.send_mail(
        "bob@example.test",
        alice,
        &message("bob@example.test", alice, &subject),
    )?;
    wait_for_message(&a, alice, "alicepw", &subject)?;
    let mut imap = Imap::connect(b.imap_addr())?;
    imap.login(alice, "alicepw")?;
    assert_eq!(imap.select("INBOX")?, 0, "stack b got stack a's mail");
    imap.login("u0002@example.test", "pw")
        .expect_err("already logged in");
    Ok(())
}

#[test]
fn stopped_stack_frees_its_ports_and_directory() -> Result<()> {
    let t0 = Instant::now();
    let mut stack = MailStack::start(MailStackOptions::default())?;
    let started = t0.elapsed();
    let ports = stack_ports(&stack);
    let dir = stack.dir().to_owned();
    assert!(
        ports.iter().all(|&p| !port_is_free(p)),
        "the stack is not listening on {ports:?}"
    );
    assert!(dir.join("dovecot/dovecot.log").exists());

    let t1 = Instant::now();
    stack.stop();
    let stopped = t1.elapsed();
    eprintln!("mail stack: start {started:?}, stop {stopped:?}");
    for port in ports {
        assert!(port_is_free(port), "port {port} still taken after stop");
    }
    assert!(!dir.exists() || std::env::var_os("BRAMBLE_TEST_KEEP_DIRS").is_some());
    stack.stop(); // idempotent
    Ok(())
}

#[test]
fn missing_program_names_the_debian_package() -> Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("stack/mail-stack.sh");
    let dir = tempfile::tempdir()?;
    // /usr/sbin (dovecot, postfix) left out of PATH
    let out = Command::new("/bin/bash")
        .arg(&script)
        .args(["start".as_ref(), dir.path().as_os_str()])
        .env("PATH", "/usr/bin:/bin")
        .env("PORT_BASE", "27000")
        .output()
        .context("running mail-stack.sh")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("dovecot not found: install the Debian package dovecot-imapd"),
        "{stderr}"
    );
    Ok(())
}
