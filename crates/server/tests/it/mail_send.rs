//! Mail from the device (seed 002, "Email message sent from the BlackBerry smartphone"), and
//! what the device asks of a message it holds (More, attachments): a new message, a reply with
//! the original appended by the server, delivery into the recipient's mailbox (local delivery
//! on the embedded default; SMTP through Postfix into Dovecot, read back over IMAP), the copy
//! in Sent, the refusal of an address the server cannot reach. Users u0042..u0045 of a private
//! Dovecot are this file's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bramble_device::mail::{Draft, MailKind, OutboxState};
use mail_builder::MessageBuilder;

use crate::activation::{Site, dovecot_site_with};
use crate::mail::{activated, deliver, forwarded, mail_stats, message, sync};
use crate::support::Result;

/// Every file in `dir`'s new/ and cur/ (of a Maildir or a Maildir++ folder).
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(rd) = std::fs::read_dir(dir.join(sub)) {
            out.extend(rd.filter_map(|e| e.ok()).map(|e| e.path()));
        }
    }
    out
}

async fn wait_files(dir: &Path, n: usize) -> Result<Vec<PathBuf>> {
    let deadline = tokio::time::Instant::now() + crate::mail::WITHIN;
    loop {
        let f = files(dir);
        if f.len() >= n {
            return Ok(f);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{} holds {} messages, not {n}", dir.display(), f.len()).into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `draft` from the device and waits until the server says it was sent or failed.
async fn send(
    device: &mut bramble_device::Device,
    store: &bramble_device::mail::MailStore,
    draft: &Draft,
) -> Result<bramble_device::mail::OutboxEntry> {
    let submit = store.compose(draft).await?;
    let mut conn = device.connect().await?;
    let entry = bramble_device::mail::wait_for_submit(
        &mut conn,
        store,
        submit.client_id,
        crate::mail::WITHIN,
        |_| {},
    )
    .await?;
    conn.close().await;
    Ok(entry)
}

#[tokio::test]
async fn embedded_send_reply_more_and_attachment() -> Result {
    let site = Site::start().await?;
    let root = site.dir.path().join("mail");
    let (alice, bob) = ("alice@example.com", "bob@example.com");
    site.user(bob, None).await?; // a user of this server without a device
    let mut device = activated(&site, alice, "alice-phone").await?;
    let store = device.mail_store().await?;

    // A new message to a user of this server: delivered into bob's Maildir, a copy in Sent.
    let entry = send(
        &mut device,
        &store,
        &Draft {
            kind: MailKind::MailNew,
            to: vec![bob.into()],
            subject: "lunch?".into(),
            body: "Noon at the usual place.".into(),
            ..Draft::default()
        },
    )
    .await?;
    assert_eq!(entry.state, OutboxState::Sent, "{entry:?}");
    let got = wait_files(&root.join(bob).join("Maildir"), 1).await?;
    let text = std::fs::read_to_string(&got[0])?;
    assert!(text.contains("Subject: lunch?"), "{text}");
    assert!(text.contains("Noon at the usual place."), "{text}");
    assert!(text.contains(&entry.message_id), "{text}");
    let sent = wait_files(&root.join(alice).join("Maildir").join(".Sent"), 1).await?;
    assert!(std::fs::read_to_string(&sent[0])?.contains("Noon at the usual place."));

    // Mail to an address beyond this server is refused, naming the missing setting.
    let entry = send(
        &mut device,
        &store,
        &Draft {
            to: vec!["someone@elsewhere.test".into()],
            subject: "out".into(),
            body: "x".into(),
            ..Draft::default()
        },
    )
    .await?;
    assert_eq!(entry.state, OutboxState::Failed, "{entry:?}");
    assert!(entry.message.contains("[server.mail] smtp"), "{entry:?}");

    // A long message with an attachment arrives; More gives the rest of its text, the
    // attachment comes in its original form.
    let long: String = (0..400)
        .map(|i| format!("Line {i} of a long report.\n"))
        .collect();
    let pdf: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let raw = MessageBuilder::new()
        .from(("Bob", bob))
        .to(alice)
        .subject("report")
        .message_id("report.1@example.com")
        .text_body(long.clone())
        .attachment("application/pdf", "report.pdf", pdf.clone())
        .write_to_string()?;
    let mut events = site.server().events();
    deliver(&root, alice, "3001.r.host", &raw)?;
    let ids = forwarded(&mut events, alice, 1).await?;
    sync(&mut device, &store, Duration::from_millis(300)).await?;
    let ref_id = u64::try_from(ids[0])?;
    let before = store.message(ref_id).await?;
    assert!(before.more, "{before:?}");
    assert_eq!(before.attachments.len(), 1);
    let mut conn = device.connect().await?;
    let after =
        bramble_device::mail::request_more(&mut conn, &store, ref_id, true, crate::mail::WITHIN)
            .await?;
    assert!(
        after.text.contains("Line 399 of a long report."),
        "{}",
        after.text.len()
    );
    let out = site.dir.path().join("report.pdf");
    let saved = bramble_device::mail::fetch_attachment(
        &mut conn,
        &store,
        ref_id,
        0,
        &out,
        crate::mail::WITHIN,
    )
    .await?;
    conn.close().await;
    assert_eq!(saved.name, "report.pdf");
    assert_eq!(std::fs::read(&out)?, pdf);

    // A reply: the device sends only what was typed; the server appends the original.
    let draft = store
        .reply_draft(ref_id, false, "Thanks, read it.", Some(alice))
        .await?;
    let entry = send(&mut device, &store, &draft).await?;
    assert_eq!(entry.state, OutboxState::Sent, "{entry:?}");
    let got = wait_files(&root.join(bob).join("Maildir"), 2).await?;
    let reply = got
        .iter()
        .map(std::fs::read_to_string)
        .filter_map(std::result::Result::ok)
        .find(|t| t.contains("Thanks, read it."))
        .ok_or("the reply did not arrive")?;
    assert!(reply.contains("Subject: Re: report"), "{reply}");
    assert!(
        reply.contains("In-Reply-To: <report.1@example.com>"),
        "{reply}"
    );
    assert!(reply.contains("-----Original Message-----"), "{reply}");
    assert!(reply.contains("Line 3 of a long report."), "{reply}");
    // A forward: the server attaches the original's attachments from the mailbox.
    let draft = store
        .forward_draft(ref_id, &[bob.to_owned()], &[], "FYI, the report.")
        .await?;
    let entry = send(&mut device, &store, &draft).await?;
    assert_eq!(entry.state, OutboxState::Sent, "{entry:?}");
    let got = wait_files(&root.join(bob).join("Maildir"), 3).await?;
    let forward = got
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .find(|b| String::from_utf8_lossy(b).contains("FYI, the report."))
        .ok_or("the forward did not arrive")?;
    let parsed = mail_parser::MessageParser::new()
        .parse(&forward)
        .ok_or("the forward does not parse")?;
    assert_eq!(parsed.subject(), Some("Fw: report"));
    use mail_parser::MimeHeaders;
    let attached = parsed
        .attachments()
        .find(|a| a.attachment_name() == Some("report.pdf"))
        .ok_or("the forward lacks the original's attachment")?;
    assert_eq!(attached.contents(), pdf.as_slice());
    let stats = mail_stats(&site, alice).await?;
    assert_eq!(stats.get("sent"), Some(&3), "{stats:?}");
    assert_eq!(stats.get("send_failed"), Some(&1), "{stats:?}");
    site.shutdown().await;
    Ok(())
}

/// Logs in as the service account to `email`'s mailbox and returns the messages of `folder`
/// whose Message-ID is `id`.
async fn imap_find(
    stack: &bramble_testkit::mail::MailStack,
    email: &str,
    folder: &str,
    id: &str,
) -> Result<Vec<Vec<u8>>> {
    use futures::TryStreamExt;
    let tcp = tokio::net::TcpStream::connect(stack.imap_addr()).await?;
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await?;
    let (user, pw) = stack.service_account();
    let mut session = client
        .login(format!("{email}*{user}"), pw)
        .await
        .map_err(|(e, _)| e)?;
    if session.select(folder).await.is_err() {
        return Ok(Vec::new());
    }
    let uids = session
        .uid_search(format!("HEADER Message-ID \"{id}\""))
        .await?;
    let mut out = Vec::new();
    for uid in uids {
        let fetched: Vec<_> = session
            .uid_fetch(uid.to_string(), "BODY.PEEK[]")
            .await?
            .try_collect()
            .await?;
        out.extend(fetched.iter().filter_map(|f| f.body().map(<[u8]>::to_vec)));
    }
    session.logout().await?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_device_mail_reaches_the_recipient_over_smtp_with_a_copy_in_sent() -> Result {
    let (site, stack) = dovecot_site_with(50, |_| {}).await?;
    let (sender, rcpt) = ("u0042@example.test", "u0043@example.test");
    let mut device = activated(&site, sender, "u0042-phone").await?;
    let store = device.mail_store().await?;
    let entry = send(
        &mut device,
        &store,
        &Draft {
            to: vec![rcpt.into()],
            subject: "through postfix".into(),
            body: "Sent from the phone, delivered by Postfix into Dovecot.".into(),
            ..Draft::default()
        },
    )
    .await?;
    assert_eq!(entry.state, OutboxState::Sent, "{entry:?}");
    let deadline = tokio::time::Instant::now() + crate::mail::WITHIN;
    let got = loop {
        let got = imap_find(&stack, rcpt, "INBOX", &entry.message_id).await?;
        if !got.is_empty() || tokio::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(got.len(), 1, "exactly one copy at the recipient");
    let text = String::from_utf8_lossy(&got[0]);
    assert!(text.contains("delivered by Postfix into Dovecot"), "{text}");
    let copy = imap_find(&stack, sender, "Sent", &entry.message_id).await?;
    assert_eq!(copy.len(), 1, "one copy in the sender's Sent folder");

    // A reply to mail that came over SMTP carries the original from the mailbox.
    let mut events = site.server().events();
    let text = message("u0044@example.test", sender, "question", "What time is it?");
    let stack_ref = &stack;
    tokio::task::block_in_place(|| stack_ref.send_mail("u0044@example.test", sender, &text))?;
    let ids = forwarded(&mut events, sender, 1).await?;
    sync(&mut device, &store, Duration::from_millis(300)).await?;
    let draft = store
        .reply_draft(u64::try_from(ids[0])?, false, "Half past.", Some(sender))
        .await?;
    let entry = send(&mut device, &store, &draft).await?;
    assert_eq!(entry.state, OutboxState::Sent, "{entry:?}");
    let deadline = tokio::time::Instant::now() + crate::mail::WITHIN;
    let got = loop {
        let got = imap_find(&stack, "u0044@example.test", "INBOX", &entry.message_id).await?;
        if !got.is_empty() || tokio::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let text = String::from_utf8_lossy(got.first().ok_or("the reply did not arrive")?);
    assert!(text.contains("Half past."), "{text}");
    assert!(
        text.contains("What time is it?"),
        "the original is appended: {text}"
    );
    site.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn mail_settings_switch_push_and_the_sent_copy_off() -> Result {
    let site = Site::start().await?;
    let root = site.dir.path().join("mail");
    let (carl, dora) = ("carl@example.com", "dora@example.com");
    site.user(dora, None).await?;
    let mut device = activated(&site, carl, "carl-phone").await?;
    let store = device.mail_store().await?;
    let shown = site
        .api(
            reqwest::Method::PATCH,
            &format!("/users/{carl}/mail-settings"),
            Some(serde_json::json!({ "push": false, "save_sent": false })),
        )
        .await?;
    assert_eq!(
        shown,
        serde_json::json!({ "push": false, "save_sent": false, "reconcile": true })
    );
    let mut events = site.server().events();
    deliver(
        &root,
        carl,
        "4001.a.host",
        &message("dora@example.com", carl, "not pushed", "x"),
    )?;
    let quiet =
        tokio::time::timeout(Duration::from_millis(1500), forwarded(&mut events, carl, 1)).await;
    assert!(
        quiet.is_err() || quiet.is_ok_and(|r| r.is_err()),
        "mail was pushed with push off"
    );
    let entry = send(
        &mut device,
        &store,
        &Draft {
            to: vec![dora.into()],
            subject: "no copy".into(),
            body: "Not kept in Sent.".into(),
            ..Draft::default()
        },
    )
    .await?;
    assert_eq!(entry.state, OutboxState::Sent, "{entry:?}");
    wait_files(&root.join(dora).join("Maildir"), 1).await?;
    assert!(
        files(&root.join(carl).join("Maildir").join(".Sent")).is_empty(),
        "a copy went to Sent"
    );
    // on again: the next message is pushed
    site.api(
        reqwest::Method::PATCH,
        &format!("/users/{carl}/mail-settings"),
        Some(serde_json::json!({ "push": true })),
    )
    .await?;
    deliver(
        &root,
        carl,
        "4002.b.host",
        &message("dora@example.com", carl, "pushed", "y"),
    )?;
    forwarded(&mut events, carl, 1).await?;
    let err = site
        .api(
            reqwest::Method::PATCH,
            &format!("/users/{carl}/mail-settings"),
            Some(serde_json::json!({ "pusj": true })),
        )
        .await
        .err()
        .ok_or("an unknown setting was accepted")?;
    assert!(err.to_string().contains("400"), "{err}");
    site.shutdown().await;
    Ok(())
}
