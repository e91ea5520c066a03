//! Hostile mail end to end (the issue: "MIME from the mailbox is parsed with a mail crate and
//! never panics; a 25 MiB message, malformed MIME, 8-bit headers and a message with 200
//! attachments each still reach the device as at least its headers and a clear note"): each
//! message goes through a real Dovecot (over SMTP, through Postfix) and through the embedded
//! Maildir store, and the device is checked for what it could read (subject, sender, size) and
//! the note that says what it could not. A normal message after them all still arrives, and no
//! forwarded message is left unconfirmed. Users u0021..u0030 of a private Dovecot are this
//! file's.

use std::path::Path;
use std::time::Duration;

use bramble_device::Device;
use bramble_device::mail::{MailStore, Message};
use bramble_server::ServerEvent;
use tokio::sync::broadcast;

use crate::activation::{Site, dovecot_site_with};
use crate::mail::{WITHIN, activated, message, sync};
use crate::support::Result;

const MIB: usize = 1024 * 1024;
/// Postfix queueing 25 MiB, Dovecot storing it and the watcher reading 4 MiB of it take longer
/// than a small message on a busy machine.
const BIG_WITHIN: Duration = Duration::from_secs(90);

/// Where the messages go: a Dovecot user over SMTP, or the embedded store's Maildir.
enum Mailbox<'a> {
    Dovecot(&'a bramble_testkit::mail::MailStack),
    Maildir(&'a Path),
}

impl Mailbox<'_> {
    fn deliver(&self, email: &str, name: &str, raw: &[u8]) -> Result {
        match self {
            Mailbox::Dovecot(stack) => {
                tokio::task::block_in_place(|| {
                    stack.send_mail_bytes("sender@example.test", email, raw)
                })?;
            }
            Mailbox::Maildir(root) => {
                // as a delivery agent does: tmp/, then new/ (the bytes as they are)
                let maildir = root.join(email).join("Maildir");
                for d in ["tmp", "new", "cur"] {
                    std::fs::create_dir_all(maildir.join(d))?;
                }
                let tmp = maildir.join("tmp").join(name);
                std::fs::write(&tmp, raw)?;
                std::fs::rename(&tmp, maildir.join("new").join(name))?;
            }
        }
        Ok(())
    }
}

/// Waits up to `within` for the agent to forward one message to `email`; its RefID.
async fn forwarded_one(
    events: &mut broadcast::Receiver<ServerEvent>,
    email: &str,
    within: Duration,
) -> Result<u64> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(ServerEvent::MailForwarded {
                email: e,
                ref_id,
                resent: false,
                ..
            })) if e == email => return Ok(u64::try_from(ref_id)?),
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(format!("nothing forwarded to {email} in {within:?}").into()),
        }
    }
}

/// A user's mailbox and phone, with the server's events.
struct Flow<'a> {
    mailbox: Mailbox<'a>,
    events: broadcast::Receiver<ServerEvent>,
    device: Device,
    store: MailStore,
    email: &'a str,
}

impl Flow<'_> {
    /// Delivers `raw`, waits up to `within` for it to be forwarded, syncs the device and
    /// returns the message as the device holds it.
    async fn through(&mut self, name: &str, raw: &[u8], within: Duration) -> Result<Message> {
        self.mailbox.deliver(self.email, name, raw)?;
        let ref_id = forwarded_one(&mut self.events, self.email, within)
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        let report = sync(&mut self.device, &self.store, Duration::from_millis(500)).await?;
        assert_eq!(report.new_messages, 1, "{name}: {report:?}");
        let listed = self.store.inbox().await?;
        assert!(
            listed.iter().any(|m| m.ref_id == ref_id),
            "{name}: {ref_id} not in the inbox"
        );
        let msg = self.store.message(ref_id).await?;
        println!(
            "{name}: from {:?}, subject {:?}, size {}, text {} of {} bytes, {} attachments, notes {:?}",
            msg.from,
            msg.subject,
            msg.size,
            msg.text.len(),
            msg.text_total,
            msg.attachments.len(),
            msg.notes
        );
        Ok(msg)
    }
}

fn has_note(msg: &Message, words: &str) -> bool {
    msg.notes.iter().any(|n| n.contains(words))
}

/// The text part of the 25 MiB message: longer than the preview, so "More" has work to do.
fn big_text() -> String {
    (0..300)
        .map(|i| format!("Line {i:03} of the text before the video."))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A 25 MiB message: a text part, then a base64 video attachment that fills it.
fn big_message() -> Vec<u8> {
    let mut raw = format!(
        "From: Big Sender <big@example.test>\r\nTo: someone@example.test\r\n\
         Subject: hostile 1: the video\r\nMessage-ID: <hostile1@example.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"big\"\r\n\r\n\
         --big\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}\r\n\
         --big\r\nContent-Type: video/mp4; name=\"v.mp4\"\r\n\
         Content-Disposition: attachment; filename=\"v.mp4\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n",
        big_text().replace('\n', "\r\n")
    )
    .into_bytes();
    let line = [b"QUJD".repeat(19), b"\r\n".to_vec()].concat();
    let end = b"--big--\r\n";
    raw.reserve(25 * MIB - raw.len());
    while raw.len() + line.len() + end.len() <= 25 * MIB {
        raw.extend_from_slice(&line);
    }
    raw.extend_from_slice(end);
    raw
}

fn with_attachments(n: usize) -> Vec<u8> {
    let mut raw = String::from(
        "From: Many <many@example.test>\r\nSubject: hostile 4: many files\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n\
         --m\r\nContent-Type: text/plain\r\n\r\nsee the files\r\n",
    );
    for i in 0..n {
        raw.push_str(&format!(
            "--m\r\nContent-Type: text/plain; name=\"f{i}.txt\"\r\n\
             Content-Disposition: attachment; filename=\"f{i}.txt\"\r\n\r\nfile {i}\r\n"
        ));
    }
    raw.push_str("--m--\r\n");
    raw.into_bytes()
}

/// Bytes that are no message at all (a fixed xorshift sequence: every run sends the same).
fn noise() -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Sends the hostile set, then a normal message, to `email` through `mailbox`, checking the
/// device after each.
async fn hostile_set(site: &Site, mailbox: Mailbox<'_>, email: &str, phone: &str) -> Result {
    let dovecot = matches!(mailbox, Mailbox::Dovecot(_));
    let device = activated(site, email, phone).await?;
    let store = device.mail_store().await?;
    let events = site.server().events();
    let mut flow = Flow {
        mailbox,
        events,
        device,
        store,
        email,
    };

    // (1) 25 MiB: the headers, the start of the text and the real size, with a note that only
    // the first 4 MiB were read; "More" gives the rest of the text part (read again in full).
    {
        let raw = big_message();
        let size = raw.len() as u64;
        let msg = flow.through("1.big", &raw, BIG_WITHIN).await?;
        drop(raw);
        assert_eq!(msg.subject, "hostile 1: the video");
        assert_eq!(msg.from, "Big Sender <big@example.test>");
        if dovecot {
            // Postfix and Dovecot add their trace headers
            assert!(
                (size..size + 4096).contains(&msg.size),
                "{} of {size}",
                msg.size
            );
        } else {
            assert_eq!(msg.size, size);
        }
        assert!(
            has_note(
                &msg,
                "This message is 25.0 MiB; only its first 4.0 MiB were read"
            ),
            "{:?}",
            msg.notes
        );
        let text = big_text();
        assert!(text.starts_with(&msg.text) && msg.text.len() < text.len());
        assert_eq!(msg.text_total, text.len() as u64);
        assert!(msg.more);
        assert_eq!(msg.attachments.len(), 1, "{:?}", msg.attachments);
        assert_eq!(msg.attachments[0].name, "v.mp4");
        let mut conn = flow.device.connect().await?;
        let more = bramble_device::mail::request_more(
            &mut conn,
            &flow.store,
            msg.ref_id,
            true,
            BIG_WITHIN,
        )
        .await?;
        conn.close().await;
        assert_eq!(more.text, text);
        assert!(!more.more);
    }

    // (2) malformed MIME: the headers and a note, whatever the parts.
    let no_closing =
        b"From: Broken <broken@example.test>\r\nSubject: hostile 2a: no closing boundary\r\n\
        MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
        --b\r\nContent-Type: text/plain\r\n\r\nhello before the end\r\n\
        --b\r\nContent-Type: image/png; name=\"x.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
        iVBORw0KGgo=\r\n";
    let msg = flow.through("2a.no-closing", no_closing, WITHIN).await?;
    assert_eq!(msg.subject, "hostile 2a: no closing boundary");
    assert_eq!(msg.from, "Broken <broken@example.test>");
    assert!(msg.text.contains("hello before the end"), "{:?}", msg.text);
    assert!(
        has_note(&msg, "could not be read as MIME"),
        "{:?}",
        msg.notes
    );

    let never_found =
        b"From: Broken <broken@example.test>\r\nSubject: hostile 2b: boundary never found\r\n\
        MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n\
        --YY\r\nContent-Type: text/plain\r\n\r\nhello in the wrong boundary\r\n--YY--\r\n";
    let msg = flow.through("2b.never-found", never_found, WITHIN).await?;
    assert_eq!(msg.subject, "hostile 2b: boundary never found");
    assert_eq!(msg.from, "Broken <broken@example.test>");
    assert!(
        has_note(&msg, "could not be read as MIME"),
        "{:?}",
        msg.notes
    );

    let garbage_cte = b"From: Broken <broken@example.test>\r\nSubject: hostile 2c: garbage encoding\r\n\
        MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"g\"\r\n\r\n\
        --g\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-garbage;;\"\x01\r\n\r\n\
        text in no known encoding\r\n\
        --g\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
        !!!!@@@@****####\r\n--g--\r\n";
    let msg = flow.through("2c.garbage-cte", garbage_cte, WITHIN).await?;
    assert_eq!(msg.subject, "hostile 2c: garbage encoding");
    assert_eq!(msg.from, "Broken <broken@example.test>");
    assert!(
        has_note(&msg, "could not be read as MIME"),
        "{:?}",
        msg.notes
    );

    // (3) 8-bit headers: raw Latin-1 and invalid UTF-8 read lossily; encoded words decoded.
    let eight_bit = b"From: Ren\xe9 \xff\xfe\xc3\xa9 <rene@example.test>\r\n\
        Subject: hostile 3a: Caf\xe9 cr\xe8me \xc3\x28\xa0\xa1\r\n\r\nVoil\xe0 le caf\xe9\r\n";
    let msg = flow.through("3a.eight-bit", eight_bit, WITHIN).await?;
    assert!(
        msg.subject.starts_with("hostile 3a: Caf"),
        "{:?}",
        msg.subject
    );
    assert!(msg.subject.contains("cr"), "{:?}", msg.subject);
    assert!(msg.from.contains("<rene@example.test>"), "{:?}", msg.from);
    assert!(msg.from.starts_with("Ren"), "{:?}", msg.from);
    for shown in [&msg.subject, &msg.from, &msg.text] {
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
    }
    assert!(msg.text.starts_with("Voil"), "{:?}", msg.text);
    assert!(
        has_note(&msg, "not in a character set that could be read"),
        "{:?}",
        msg.notes
    );

    let encoded = b"From: =?iso-8859-1?q?Ren=E9_M=FCller?= <rene@example.test>\r\n\
        Subject: =?utf-8?b?aG9zdGlsZSAzYjogQ2Fmw6kgY3LDqG1lIOKckw==?=\r\n\
        MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
        Content-Transfer-Encoding: 8bit\r\n\r\nVoil\xe0 le caf\xe9\r\n";
    let msg = flow.through("3b.encoded-words", encoded, WITHIN).await?;
    assert_eq!(msg.subject, "hostile 3b: Café crème ✓");
    assert_eq!(msg.from, "René Müller <rene@example.test>");
    assert_eq!(msg.text, "Voilà le café");

    // (4) 200 attachments: 100 listed, and a note that there are 200.
    let many = with_attachments(200);
    let msg = flow.through("4.many", &many, WITHIN).await?;
    drop(many);
    assert_eq!(msg.subject, "hostile 4: many files");
    assert_eq!(msg.from, "Many <many@example.test>");
    assert_eq!(msg.attachments.len(), 100);
    assert_eq!(msg.attachments[99].name, "f99.txt");
    assert!(
        has_note(
            &msg,
            "The message lists 200 attachments; the first 100 are shown."
        ),
        "{:?}",
        msg.notes
    );
    assert_eq!(msg.text, "see the files");

    // (5) not a message at all.
    let noise = noise();
    let msg = flow.through("5.noise", &noise, WITHIN).await?;
    if dovecot {
        // Postfix made it a message: its own From, Date and Message-ID, and the bytes as the
        // body, which is no text
        assert_eq!(msg.from, "sender@example.test");
        assert!(
            has_note(&msg, "not in a character set that could be read"),
            "{:?}",
            msg.notes
        );
    } else {
        assert_eq!((msg.from.as_str(), msg.subject.as_str()), ("", ""));
        assert!(
            has_note(&msg, "could not be read as MIME"),
            "{:?}",
            msg.notes
        );
    }
    for shown in [&msg.subject, &msg.from] {
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
    }

    // The watcher kept going: a normal message after them all arrives as it is.
    let normal = message(
        "Erin <erin@example.test>",
        email,
        "hostile 6: all is well",
        "Nothing odd here.",
    )
    .replace('\n', "\r\n");
    let msg = flow.through("6.normal", normal.as_bytes(), WITHIN).await?;
    assert_eq!(msg.subject, "hostile 6: all is well");
    assert_eq!(msg.from, "Erin <erin@example.test>");
    assert_eq!(msg.text, "Nothing odd here.");
    assert!(msg.notes.is_empty(), "{:?}", msg.notes);
    assert_eq!(flow.store.inbox().await?.len(), 9);

    // Nothing was lost: every forwarded message was confirmed.
    let server_store = site.server().store().clone();
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let pending = server_store.mail_pending_count(email).await?;
        if pending == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{pending} messages not confirmed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_mail_through_dovecot_reaches_the_device_with_notes() -> Result {
    let (site, stack) = dovecot_site_with(30, |_| {}).await?;
    let result = hostile_set(
        &site,
        Mailbox::Dovecot(&stack),
        "u0021@example.test",
        "u0021-phone",
    )
    .await;
    if result.is_err() {
        println!("{}", stack.log_tails());
    }
    site.shutdown().await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_mail_in_a_maildir_reaches_the_device_with_notes() -> Result {
    let site = Site::start().await?;
    let root = site.dir.path().join("mail");
    let result = hostile_set(
        &site,
        Mailbox::Maildir(&root),
        "hostile@example.com",
        "hostile-phone",
    )
    .await;
    site.shutdown().await;
    result
}
