//! `messaging::mail::transport`: SMTP through the shared stack's Postfix (read back over IMAP),
//! its refusals (permanent and transient), and local delivery into Maildirs in a temp dir.
//!
//! Users of the shared stack: u0056…u0060 (u0051…u0055 are `access`'s).
//!
//! The stack's Postfix takes any `@example.test` recipient at RCPT time (unknown ones bounce
//! later, from Dovecot's LMTP), so the 5xx case is an address literal of Postfix's own
//! address, `nosuchuser@[127.0.0.1]`: a local address there, and local delivery is disabled
//! ("550 5.1.1 … Recipient address rejected").

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use bramble_server::ServerConfig;
use bramble_server::messaging::mail::compose::Composed;
use bramble_server::messaging::mail::transport::{self, SendError, Transport};
use futures::TryStreamExt;

use crate::access::{raw_login, shared_stack, wait_for};
use crate::support::Result;

fn composed(from: &str, to: &[&str], id: &str, subject: &str) -> Composed {
    let raw = format!(
        "From: <{from}>\r\nTo: {}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\
         Date: Tue, 1 Jul 2025 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{subject}: sent from a phone.\r\n",
        to.iter()
            .map(|t| format!("<{t}>"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Composed {
        raw: raw.into_bytes(),
        envelope_from: from.to_owned(),
        recipients: to.iter().map(|t| t.to_string()).collect(),
    }
}

fn unique(what: &str) -> String {
    format!("{what}.{:016x}@phone.example.test", rand::random::<u64>())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_through_postfix_arrives_as_sent() -> Result {
    let stack = shared_stack().await;
    let (to, to2) = ("u0056@example.test", "u0057@example.test");
    let smtp = Transport::Smtp {
        addr: stack.smtp_addr().to_string(),
    };
    smtp.check().await?;
    let id = unique("smtp");
    let mail = composed(
        "u0060@example.test",
        &[to, "U0057@Example.test"],
        &id,
        "smtp one",
    );
    let sent = smtp.send(&mail).await?;
    assert_eq!(sent.recipients, vec![to.to_owned(), to2.to_owned()]);
    assert!(sent.reply.starts_with("250"), "{}", sent.reply);

    for user in [to, to2] {
        let loc = wait_for(stack, user, &id).await?;
        let bramble_server::messaging::mailbox::access::Locator::Imap { uid, .. } = loc else {
            panic!("not IMAP");
        };
        let mut s = raw_login(stack, user).await?;
        s.select("INBOX").await?;
        let fetched: Vec<_> = s
            .uid_fetch(uid.to_string(), "(UID BODY.PEEK[])")
            .await?
            .try_collect()
            .await?;
        let body = fetched
            .iter()
            .find(|f| f.uid == Some(uid))
            .and_then(|f| f.body())
            .ok_or("no body")?
            .to_vec();
        s.logout().await?;
        // Postfix and Dovecot put their headers in front; the rest is the bytes as sent
        assert!(
            body.ends_with(&mail.raw),
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_refusals_are_permanent_or_transient() -> Result {
    let stack = shared_stack().await;
    let smtp = Transport::Smtp {
        addr: stack.smtp_addr().to_string(),
    };
    // a 5xx at RCPT: nothing is sent
    let mail = composed(
        "u0058@example.test",
        &["u0058@example.test", "nosuchuser@[127.0.0.1]"],
        &unique("refused"),
        "refused",
    );
    let e = smtp.send(&mail).await.expect_err("an error");
    eprintln!("a 5xx: {e}");
    assert!(e.is_permanent(), "{e}");
    let text = e.to_string();
    assert!(
        text.starts_with("the mail server refused the message: 550 5.1.1"),
        "{text}"
    );
    assert!(text.contains("nosuchuser@[127.0.0.1]"), "{text}");

    // an address that is not one
    let mut bad = composed(
        "u0058@example.test",
        &["u0058@example.test"],
        &unique("bad"),
        "bad",
    );
    bad.recipients = vec!["not an address".into()];
    let e = smtp.send(&bad).await.expect_err("an error");
    eprintln!("not an address: {e}");
    assert!(
        e.is_permanent() && e.to_string().contains("not an address"),
        "{e}"
    );
    bad.recipients.clear();
    assert!(smtp.send(&bad).await.expect_err("an error").is_permanent());

    // nobody listening: try again later
    let nobody = Transport::Smtp {
        addr: format!("127.0.0.1:{}", bramble_testkit::free_port()),
    };
    let e = nobody.send(&mail).await.expect_err("an error");
    eprintln!("nobody listening: {e}");
    assert!(matches!(e, SendError::Transient(_)), "{e}");
    assert!(
        e.to_string().contains("cannot reach the mail server"),
        "{e}"
    );
    assert!(matches!(nobody.check().await, Err(SendError::Transient(_))));

    // a 4xx: a server that answers 421 to everything
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let busy_addr = listener.local_addr()?;
    let busy = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut conn, _)) = listener.accept().await {
            let _ = conn
                .write_all(b"421 4.3.2 busy.example.test Service not available, try later\r\n")
                .await;
        }
    });
    let e = Transport::Smtp {
        addr: busy_addr.to_string(),
    }
    .send(&mail)
    .await
    .expect_err("an error");
    eprintln!("a 421: {e}");
    assert!(matches!(e, SendError::Transient(_)), "{e}");
    busy.abort();
    Ok(())
}

fn users(list: &[&str]) -> transport::LocalUsers {
    let set: HashSet<String> = list.iter().map(|s| s.to_string()).collect();
    Arc::new(move |addr: &str| set.contains(addr))
}

fn new_files(root: &Path, email: &str, sub: &str) -> Vec<String> {
    let dir = root.join(email).join("Maildir").join(sub);
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_delivery_once_per_recipient() -> Result {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("mail");
    let (a, b) = ("ann@example.test", "ben@example.test");
    let local = Transport::Local {
        maildir_root: root.clone(),
        users: users(&[a, b]),
    };
    local.check().await?;
    let mail = composed(a, &[a, "Ben@Example.TEST"], &unique("local"), "local one");
    let sent = local.send(&mail).await?;
    assert_eq!(sent.recipients, vec![a.to_owned(), b.to_owned()]);
    for user in [a, b] {
        let files = new_files(&root, user, "new");
        assert_eq!(files.len(), 1, "{user}: {files:?}");
        assert!(files[0].starts_with("1751364000.") && files[0].ends_with(".bramble"));
        let text = std::fs::read(root.join(user).join("Maildir/new").join(&files[0]))?;
        let want = format!("Return-Path: <{a}>\r\nDelivered-To: {user}\r\n");
        assert!(text.starts_with(want.as_bytes()));
        assert!(text.ends_with(&mail.raw));
        assert_eq!(new_files(&root, user, "tmp"), Vec::<String>::new());
    }
    // a retry (say after a crash before the outbox noted it) makes no second copy
    local.send(&mail).await?;
    assert_eq!(new_files(&root, a, "new").len(), 1);
    assert_eq!(new_files(&root, b, "new").len(), 1);
    // not even after a reader moved it to cur/ and flagged it
    let name = new_files(&root, b, "new").remove(0);
    let md = root.join(b).join("Maildir");
    std::fs::rename(
        md.join("new").join(&name),
        md.join("cur").join(format!("{name}:2,S")),
    )?;
    let again = local.send(&mail).await?;
    assert!(again.reply.contains("2 already had it"), "{}", again.reply);
    assert_eq!(new_files(&root, b, "new"), Vec::<String>::new());
    assert_eq!(new_files(&root, b, "cur"), vec![format!("{name}:2,S")]);

    // another message is another file
    local
        .send(&composed(b, &[a], &unique("local2"), "local two"))
        .await?;
    assert_eq!(new_files(&root, a, "new").len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_delivery_refuses_foreign_recipients_and_delivers_nothing() -> Result {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("mail");
    let a = "ann@example.test";
    let local = Transport::Local {
        maildir_root: root.clone(),
        users: users(&[a]),
    };
    let mail = composed(
        a,
        &[a, "someone@elsewhere.example"],
        &unique("foreign"),
        "foreign",
    );
    let e = local.send(&mail).await.expect_err("an error");
    eprintln!("a foreign recipient: {e}");
    assert!(e.is_permanent(), "{e}");
    let text = e.to_string();
    assert!(text.contains("someone@elsewhere.example"), "{text}");
    assert!(text.contains("[server.mail] smtp"), "{text}");
    assert_eq!(
        new_files(&root, a, "new"),
        Vec::<String>::new(),
        "nothing delivered"
    );
    // an address that cannot name a directory is not a local user either
    let mut odd = composed(a, &[a], &unique("odd"), "odd");
    odd.recipients = vec!["../etc@x".into()];
    assert!(local.send(&odd).await.expect_err("an error").is_permanent());

    // a user directory that is a link is not followed
    let linked = "lee@example.test";
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&root)?;
    std::fs::create_dir_all(&elsewhere)?;
    std::os::unix::fs::symlink(&elsewhere, root.join(linked))?;
    let local = Transport::Local {
        maildir_root: root.clone(),
        users: users(&[a, linked]),
    };
    let e = local
        .send(&composed(a, &[linked], &unique("link"), "link"))
        .await
        .expect_err("an error");
    eprintln!("a linked user directory: {e}");
    assert!(
        matches!(e, SendError::Transient(_)) && e.to_string().contains("symbolic link"),
        "{e}"
    );
    assert_eq!(std::fs::read_dir(&elsewhere)?.count(), 0);
    Ok(())
}

#[test]
fn transport_from_the_configuration() {
    let any = users(&[]);
    let mut cfg = ServerConfig::with_data_dir("/srv/bramble");
    match transport::transport(&cfg, any.clone()) {
        Ok(Transport::Local { maildir_root, .. }) => {
            assert_eq!(maildir_root, Path::new("/srv/bramble/mail"));
        }
        other => panic!("embedded default: {other:?}"),
    }
    cfg.mail.imap = Some("127.0.0.1:143".into());
    let e = transport::transport(&cfg, any.clone()).expect_err("an error");
    eprintln!("imap without smtp: {e}");
    assert!(e.to_string().contains("[server.mail] smtp"), "{e}");
    cfg.mail.smtp = Some("127.0.0.1:25".into());
    assert!(matches!(
        transport::transport(&cfg, any.clone()),
        Ok(Transport::Smtp { addr }) if addr == "127.0.0.1:25"
    ));
    cfg.mail.smtp = Some("mail.example.test".into());
    let e = transport::transport(&cfg, any).expect_err("an error");
    assert!(
        e.to_string().contains("smtp = \"mail.example.test\""),
        "{e}"
    );
}
