//! `messaging::mailbox::access` against the shared Dovecot (`MailStack::shared()`) and against
//! Maildirs in temp dirs: fetch, flags, delete, move, append; gone messages, a changed
//! UIDVALIDITY, bad folder and file names, symbolic links.
//!
//! Users of the shared stack: u0051…u0055 here (u0056…u0060 are `transport`'s), one per test,
//! so no other test sees their mail.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bramble_server::messaging::mailbox::access::{AccessError, Flags, Locator, MailAccess, Moved};
use bramble_server::messaging::mailbox::{ImapAuth, ImapConfig, MailboxSource, MaildirConfig};
use bramble_testkit::MailStack;
use futures::TryStreamExt;

use crate::support::Result;

const WITHIN: Duration = Duration::from_secs(10);

/// The shared stack, started off the async threads.
pub async fn shared_stack() -> &'static MailStack {
    let _ = crate::support::init_logs();
    tokio::task::spawn_blocking(MailStack::shared)
        .await
        .expect("starting the shared mail stack")
}

pub fn imap_config(stack: &MailStack) -> ImapConfig {
    let (user, password) = stack.service_account();
    let mut cfg = ImapConfig::new(
        stack.imap_addr().to_string(),
        ImapAuth::service_account(user, password),
    );
    cfg.timeout = Duration::from_secs(10);
    cfg
}

pub type RawSession = async_imap::Session<tokio::net::TcpStream>;

/// A plain IMAP login to `email`'s mailbox as the service account, not through the code
/// under test.
pub async fn raw_login(stack: &MailStack, email: &str) -> Result<RawSession> {
    let tcp = tokio::net::TcpStream::connect(stack.imap_addr()).await?;
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await?;
    let (_, password) = stack.service_account();
    let session = client
        .login(stack.service_login(email), password)
        .await
        .map_err(|(e, _)| e)?;
    Ok(session)
}

/// The UIDs in `folder` of messages whose Message-ID contains `id`, and the folder's
/// UIDVALIDITY; `None` when the folder does not exist.
pub async fn find(
    stack: &MailStack,
    email: &str,
    folder: &str,
    id: &str,
) -> Result<Option<(u32, Vec<u32>)>> {
    let mut s = raw_login(stack, email).await?;
    let mailbox = match s.select(folder).await {
        Ok(m) => m,
        Err(async_imap::error::Error::No(_)) => {
            s.logout().await?;
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let mut uids: Vec<u32> = s
        .uid_search(format!("HEADER Message-ID \"{id}\""))
        .await?
        .into_iter()
        .collect();
    uids.sort_unstable();
    s.logout().await?;
    Ok(Some((mailbox.uid_validity.ok_or("no UIDVALIDITY")?, uids)))
}

/// Waits until the message with Message-ID `id` is in `email`'s INBOX; its locator.
pub async fn wait_for(stack: &MailStack, email: &str, id: &str) -> Result<Locator> {
    let deadline = Instant::now() + WITHIN;
    loop {
        if let Some((uid_validity, uids)) = find(stack, email, "INBOX", id).await?
            && let Some(&uid) = uids.last()
        {
            return Ok(Locator::Imap {
                folder: "INBOX".into(),
                uid_validity,
                uid,
            });
        }
        if Instant::now() > deadline {
            return Err(format!("{id} did not arrive in {email}'s INBOX within {WITHIN:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The flags of `uid` in `folder`, read over a plain IMAP login.
pub(crate) async fn raw_flags(
    stack: &MailStack,
    email: &str,
    folder: &str,
    uid: u32,
) -> Result<Vec<String>> {
    let mut s = raw_login(stack, email).await?;
    s.select(folder).await?;
    let fetched: Vec<_> = s
        .uid_fetch(uid.to_string(), "(UID FLAGS)")
        .await?
        .try_collect()
        .await?;
    let flags = fetched
        .iter()
        .find(|f| f.uid == Some(uid))
        .map(|f| f.flags().map(|f| format!("{f:?}")).collect())
        .ok_or("no such message")?;
    s.logout().await?;
    Ok(flags)
}

fn message(to: &str, subject: &str, id: &str) -> String {
    format!(
        "From: <carol@example.test>\nTo: <{to}>\nSubject: {subject}\nMessage-ID: <{id}>\n\
         Date: Tue, 1 Jul 2025 10:00:00 +0000\n\n{subject}: the body of the message.\n"
    )
}

async fn send(stack: &'static MailStack, to: &str, text: String) -> Result {
    let to = to.to_owned();
    tokio::task::spawn_blocking(move || {
        stack
            .send_mail("carol@example.test", &to, &text)
            .map_err(|e| format!("{e:#}"))
    })
    .await?
    .map_err(Into::into)
}

/// A Message-ID nobody else uses.
fn unique(what: &str) -> String {
    format!("{what}.{:016x}@test.example.test", rand::random::<u64>())
}

fn imap_loc(loc: &Locator) -> (String, u32, u32) {
    match loc {
        Locator::Imap {
            folder,
            uid_validity,
            uid,
        } => (folder.clone(), *uid_validity, *uid),
        other => panic!("not an IMAP locator: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_fetch_set_flags_and_delete() -> Result {
    let stack = shared_stack().await;
    let user = "u0051@example.test";
    let access = MailAccess::new(&MailboxSource::Imap(imap_config(stack)));
    let id = unique("fetch");
    send(stack, user, message(user, "access fetch", &id)).await?;
    let loc = wait_for(stack, user, &id).await?;
    let (_, _, uid) = imap_loc(&loc);

    let got = access.fetch(user, &loc, 1 << 20).await?.ok_or("gone")?;
    let text = String::from_utf8_lossy(&got.raw);
    assert!(text.contains(&format!("Message-ID: <{id}>")), "{text}");
    assert!(text.contains("access fetch: the body"), "{text}");
    assert!(!got.truncated);
    assert_eq!(got.size, Some(got.raw.len() as u64));
    let cut = access.fetch(user, &loc, 10).await?.ok_or("gone")?;
    assert!(cut.truncated);
    assert_eq!(cut.raw, got.raw[..10]);
    // fetching leaves \Seen alone
    assert_eq!(access.flags(user, &loc).await?, Some(Flags::default()));

    assert!(access.set_flags(user, &loc, Some(true), Some(true)).await?);
    let raw = raw_flags(stack, user, "INBOX", uid).await?;
    assert!(
        raw.contains(&"Seen".to_owned()) && raw.contains(&"Flagged".to_owned()),
        "{raw:?}"
    );
    assert_eq!(
        access.flags(user, &loc).await?,
        Some(Flags {
            seen: true,
            flagged: true
        })
    );
    assert!(access.set_flags(user, &loc, Some(false), None).await?);
    let raw = raw_flags(stack, user, "INBOX", uid).await?;
    assert!(
        !raw.contains(&"Seen".to_owned()) && raw.contains(&"Flagged".to_owned()),
        "{raw:?}"
    );
    // the address is lower-cased, as the watchers do
    assert!(
        access
            .set_flags("U0051@Example.TEST", &loc, None, Some(false))
            .await?
    );
    assert_eq!(access.flags(user, &loc).await?, Some(Flags::default()));

    assert!(access.delete(user, &loc).await?);
    assert_eq!(
        find(stack, user, "INBOX", &id).await?.map(|f| f.1),
        Some(vec![])
    );
    assert_eq!(access.fetch(user, &loc, 1 << 20).await?, None);
    assert!(!access.set_flags(user, &loc, Some(true), None).await?);
    assert!(!access.delete(user, &loc).await?);
    assert_eq!(access.flags(user, &loc).await?, None);
    assert_eq!(access.move_to(user, &loc, "Archive").await?, None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_move_creates_the_folder_and_gives_the_new_locator() -> Result {
    let stack = shared_stack().await;
    let user = "u0052@example.test";
    let access = MailAccess::new(&MailboxSource::Imap(imap_config(stack)));
    let id = unique("move");
    send(stack, user, message(user, "access move", &id)).await?;
    let loc = wait_for(stack, user, &id).await?;
    assert!(access.set_flags(user, &loc, None, Some(true)).await?);

    // to a folder that does not exist yet, with a level
    assert_eq!(find(stack, user, "Archive.2024", &id).await?, None);
    let Some(Moved::To(moved)) = access.move_to(user, &loc, "Archive.2024").await? else {
        panic!("not moved, or its new place unknown");
    };
    let (folder, validity, uid) = imap_loc(&moved);
    assert_eq!(folder, "Archive.2024");
    assert_eq!(
        find(stack, user, "Archive.2024", &id).await?,
        Some((validity, vec![uid]))
    );
    assert_eq!(
        find(stack, user, "INBOX", &id).await?.map(|f| f.1),
        Some(vec![])
    );
    assert_eq!(
        access.fetch(user, &loc, 1 << 20).await?,
        None,
        "old locator is gone"
    );
    let got = access.fetch(user, &moved, 1 << 20).await?.ok_or("gone")?;
    assert!(String::from_utf8_lossy(&got.raw).contains(&id));
    assert_eq!(
        access.flags(user, &moved).await?.map(|f| f.flagged),
        Some(true),
        "flags move with it"
    );

    // moving to where it is changes nothing
    assert_eq!(
        access.move_to(user, &moved, "Archive.2024").await?,
        Some(Moved::To(moved.clone()))
    );

    // a folder name that is not ASCII: modified UTF-7 on the wire
    let Some(Moved::To(utf8)) = access.move_to(user, &moved, "Entwürfe").await? else {
        panic!("not moved to Entwürfe");
    };
    assert_eq!(utf8.folder(), "Entwürfe");
    let (_, validity, uid) = imap_loc(&utf8);
    assert_eq!(
        find(stack, user, "Entw&APw-rfe", &id).await?,
        Some((validity, vec![uid]))
    );
    assert!(access.set_flags(user, &utf8, Some(true), None).await?);
    assert!(
        raw_flags(stack, user, "Entw&APw-rfe", uid)
            .await?
            .contains(&"Seen".to_owned())
    );

    // and back to INBOX
    let Some(Moved::To(back)) = access.move_to(user, &utf8, "INBOX").await? else {
        panic!("not moved back");
    };
    assert_eq!(back.folder(), "INBOX");
    assert!(access.fetch(user, &back, 1 << 20).await?.is_some());
    assert_eq!(access.fetch(user, &utf8, 1 << 20).await?, None);
    assert!(access.delete(user, &back).await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_append_files_a_copy_in_sent() -> Result {
    let stack = shared_stack().await;
    let user = "u0053@example.test";
    let access = MailAccess::new(&MailboxSource::Imap(imap_config(stack)));
    assert_eq!(find(stack, user, "Sent", "x").await?, None, "no Sent yet");
    let id = unique("sent");
    let raw = message("bob@example.test", "access sent", &id).replace('\n', "\r\n");
    access.append(user, "Sent", raw.as_bytes(), true).await?;
    let (validity, uids) = find(stack, user, "Sent", &id)
        .await?
        .ok_or("no Sent folder")?;
    assert_eq!(uids.len(), 1);
    let loc = Locator::Imap {
        folder: "Sent".into(),
        uid_validity: validity,
        uid: uids[0],
    };
    let got = access.fetch(user, &loc, 1 << 20).await?.ok_or("gone")?;
    assert_eq!(got.raw, raw.as_bytes(), "the bytes as they were given");
    assert_eq!(access.flags(user, &loc).await?.map(|f| f.seen), Some(true));

    // the folder exists now; an unseen copy
    let id2 = unique("sent2");
    let raw2 = message("bob@example.test", "access sent 2", &id2).replace('\n', "\r\n");
    access.append(user, "Sent", raw2.as_bytes(), false).await?;
    let (validity2, uids2) = find(stack, user, "Sent", &id2).await?.ok_or("no Sent")?;
    assert_eq!(validity2, validity);
    let loc2 = Locator::Imap {
        folder: "Sent".into(),
        uid_validity: validity,
        uid: uids2[0],
    };
    assert_eq!(access.flags(user, &loc2).await?, Some(Flags::default()));

    // too large
    let big = vec![b'x'; bramble_server::messaging::mailbox::access::MAX_APPEND_BYTES + 1];
    assert!(matches!(
        access.append(user, "Sent", &big, true).await,
        Err(AccessError::TooLarge { .. })
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_gone_messages_uidvalidity_and_bad_names() -> Result {
    let stack = shared_stack().await;
    let user = "u0054@example.test";
    let access = MailAccess::new(&MailboxSource::Imap(imap_config(stack)));
    let id = unique("gone");
    send(stack, user, message(user, "access gone", &id)).await?;
    let loc = wait_for(stack, user, &id).await?;
    let (_, validity, uid) = imap_loc(&loc);

    // another UIDVALIDITY: the message is gone as far as the locator goes, and nothing is done
    let stale = Locator::Imap {
        folder: "INBOX".into(),
        uid_validity: validity.wrapping_add(1),
        uid,
    };
    assert_eq!(access.fetch(user, &stale, 1024).await?, None);
    assert_eq!(access.flags(user, &stale).await?, None);
    assert!(!access.set_flags(user, &stale, Some(true), None).await?);
    assert!(!access.delete(user, &stale).await?);
    assert_eq!(access.move_to(user, &stale, "Archive").await?, None);
    assert_eq!(access.flags(user, &loc).await?, Some(Flags::default()));

    // a UID that does not exist, a folder that does not exist
    let missing = Locator::Imap {
        folder: "INBOX".into(),
        uid_validity: validity,
        uid: uid + 1000,
    };
    assert_eq!(access.fetch(user, &missing, 1024).await?, None);
    assert!(!access.delete(user, &missing).await?);
    let nowhere = Locator::Imap {
        folder: "No such folder".into(),
        uid_validity: validity,
        uid,
    };
    assert_eq!(access.fetch(user, &nowhere, 1024).await?, None);
    assert!(!access.set_flags(user, &nowhere, None, Some(true)).await?);

    // bad folder names are refused before anything is sent
    for bad in ["", "a\r\nb", "tab\there"] {
        let e = access.move_to(user, &loc, bad).await.expect_err("an error");
        assert!(matches!(e, AccessError::BadFolder { .. }), "{bad:?}: {e}");
        let e = access
            .append(user, bad, b"x", true)
            .await
            .expect_err("an error");
        assert!(matches!(e, AccessError::BadFolder { .. }), "{bad:?}: {e}");
    }
    let long = "x".repeat(256);
    let e = access
        .append(user, &long, b"x", true)
        .await
        .expect_err("an error");
    eprintln!("a long folder name: {e}");
    assert!(e.to_string().contains("longer than 255 bytes"), "{e}");
    // a quote and a backslash are fine (async-imap quotes the name)
    let odd = r#"Odd "name" \ here"#;
    let Some(Moved::To(there)) = access.move_to(user, &loc, odd).await? else {
        panic!("not moved to {odd:?}");
    };
    assert_eq!(there.folder(), odd);
    assert!(access.fetch(user, &there, 1024).await?.is_some());

    // a locator of the other store, a bad address
    let md = Locator::Maildir {
        folder: "INBOX".into(),
        name: "x".into(),
    };
    let e = access.fetch(user, &md, 1024).await.expect_err("an error");
    eprintln!("a Maildir locator on an IMAP store: {e}");
    assert!(matches!(e, AccessError::WrongStore { .. }), "{e}");
    let e = access
        .fetch("no address", &loc, 1024)
        .await
        .expect_err("an error");
    assert!(matches!(e, AccessError::BadAddress(_)), "{e}");
    assert!(access.delete(user, &there).await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_errors_name_what_failed() -> Result {
    let stack = shared_stack().await;
    let user = "u0055@example.test";
    // the wrong service password
    let mut cfg = imap_config(stack);
    cfg.auth = ImapAuth::service_account("service", "wrong");
    let access = MailAccess::new(&MailboxSource::Imap(cfg));
    let e = access
        .append(user, "Sent", b"Subject: x\r\n\r\nx\r\n", true)
        .await
        .expect_err("an error");
    eprintln!("a wrong service password: {e}");
    assert!(matches!(e, AccessError::Imap(ref i) if i.is_login()), "{e}");
    // nobody listening
    let port = bramble_testkit::free_port();
    let mut cfg = imap_config(stack);
    cfg.addr = format!("127.0.0.1:{port}");
    let access = MailAccess::new(&MailboxSource::Imap(cfg));
    let e = access
        .append(user, "Sent", b"Subject: x\r\n\r\nx\r\n", true)
        .await
        .expect_err("an error");
    assert!(
        e.to_string().contains("cannot reach the IMAP server"),
        "{e}"
    );
    Ok(())
}

/// A server without UIDPLUS and MOVE (Dovecot told to announce less, on a stack of this test's
/// own): a move is `UID COPY` + delete, its new UID found by Message-ID; a delete is a plain
/// `EXPUNGE`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_without_uidplus_and_move() -> Result {
    let _ = crate::support::init_logs();
    let stack = tokio::task::spawn_blocking(|| {
        MailStack::start(bramble_testkit::MailStackOptions {
            extra_users: 1,
            ..Default::default()
        })
        .map_err(|e| format!("{e:#}"))
    })
    .await??;
    let stack: &'static MailStack = Box::leak(Box::new(stack));
    let conf = stack.dir().join("dovecot/dovecot.conf");
    let mut text = std::fs::read_to_string(&conf)?;
    text.push_str("protocol imap {\n  imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+\n}\n");
    std::fs::write(&conf, text)?;
    let out = tokio::process::Command::new("doveadm")
        .arg("-c")
        .arg(&conf)
        .arg("reload")
        .output()
        .await?;
    assert!(
        out.status.success(),
        "doveadm reload: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let user = "u0001@example.test";
    let cfg = imap_config(stack);
    // wait until the new configuration is in force (logins fail while Dovecot reloads)
    let deadline = Instant::now() + WITHIN;
    loop {
        match bramble_server::messaging::mailbox::Watchers::check_login(&cfg, user).await {
            Ok(info) if !info.uidplus => break,
            other => assert!(
                Instant::now() < deadline,
                "Dovecot still announces UIDPLUS: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let access = MailAccess::new(&MailboxSource::Imap(cfg));

    let id = unique("nouidplus");
    send(stack, user, message(user, "no uidplus", &id)).await?;
    let loc = wait_for(stack, user, &id).await?;
    let Some(Moved::To(moved)) = access.move_to(user, &loc, "Archive").await? else {
        panic!("not moved, or not found by its Message-ID");
    };
    let (_, validity, uid) = imap_loc(&moved);
    assert_eq!(
        find(stack, user, "Archive", &id).await?,
        Some((validity, vec![uid]))
    );
    assert_eq!(
        find(stack, user, "INBOX", &id).await?.map(|f| f.1),
        Some(vec![])
    );
    assert!(access.fetch(user, &moved, 1024).await?.is_some());

    // another message in INBOX, deleted at the end
    send(
        stack,
        user,
        format!("From: <carol@example.test>\nTo: <{user}>\nSubject: second one\n\nx\n"),
    )
    .await?;
    let deadline = Instant::now() + WITHIN;
    let bare = loop {
        let mut s = raw_login(stack, user).await?;
        let m = s.select("INBOX").await?;
        let uids = s.uid_search("SUBJECT \"second one\"").await?;
        s.logout().await?;
        if let Some(&uid) = uids.iter().max() {
            break Locator::Imap {
                folder: "INBOX".into(),
                uid_validity: m.uid_validity.ok_or("no UIDVALIDITY")?,
                uid,
            };
        }
        assert!(
            Instant::now() < deadline,
            "the mail without Message-ID did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // without a Message-ID its new place cannot be found (appended: Postfix would add one)
    let raw = b"From: <carol@example.test>\r\nSubject: appended bare\r\n\r\nx\r\n";
    access.append(user, "INBOX", raw, false).await?;
    let mut s = raw_login(stack, user).await?;
    let m = s.select("INBOX").await?;
    let appended = s
        .uid_search("SUBJECT \"appended bare\"")
        .await?
        .into_iter()
        .max()
        .ok_or("appended message not found")?;
    s.logout().await?;
    let appended = Locator::Imap {
        folder: "INBOX".into(),
        uid_validity: m.uid_validity.ok_or("no UIDVALIDITY")?,
        uid: appended,
    };
    assert_eq!(
        access.move_to(user, &appended, "Archive").await?,
        Some(Moved::Untracked)
    );
    assert_eq!(access.fetch(user, &appended, 1024).await?, None);

    // delete: plain EXPUNGE
    assert!(access.delete(user, &moved).await?);
    assert_eq!(
        find(stack, user, "Archive", &id).await?.map(|f| f.1),
        Some(vec![])
    );
    assert!(access.delete(user, &bare).await?);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Maildir

fn maildir_access(root: &Path) -> MailAccess {
    MailAccess::new(&MailboxSource::Maildir(MaildirConfig::new(root)))
}

/// Delivers like the embedded relay: `tmp/` then `new/`. Returns the base name.
fn deliver(root: &Path, email: &str, name: &str, text: &str) -> Result<String> {
    let md = root.join(email).join("Maildir");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(md.join(sub))?;
    }
    std::fs::write(md.join("tmp").join(name), text)?;
    std::fs::rename(md.join("tmp").join(name), md.join("new").join(name))?;
    Ok(name.to_owned())
}

fn files(dir: &Path) -> Vec<String> {
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

fn md(root: &Path, email: &str) -> PathBuf {
    root.join(email).join("Maildir")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maildir_fetch_set_flags_and_delete() -> Result {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let user = "dora@example.test";
    let access = maildir_access(root);
    let text = message(user, "maildir fetch", "m1@x");
    let name = deliver(root, user, "1700000000.M1P1.host,S=100", &text)?;
    let loc = Locator::Maildir {
        folder: "INBOX".into(),
        name: name.clone(),
    };

    let got = access.fetch(user, &loc, 1 << 20).await?.ok_or("gone")?;
    assert_eq!(got.raw, text.as_bytes());
    assert!(!got.truncated);
    assert_eq!(got.size, Some(text.len() as u64));
    let cut = access.fetch(user, &loc, 5).await?.ok_or("gone")?;
    assert!(cut.truncated && cut.raw == text.as_bytes()[..5]);
    assert_eq!(access.flags(user, &loc).await?, Some(Flags::default()));

    // flags: out of new/ into cur/, letters sorted
    assert!(access.set_flags(user, &loc, Some(true), Some(true)).await?);
    assert_eq!(files(&md(root, user).join("new")), Vec::<String>::new());
    assert_eq!(
        files(&md(root, user).join("cur")),
        vec![format!("{name}:2,FS")]
    );
    assert_eq!(
        access.flags(user, &loc).await?,
        Some(Flags {
            seen: true,
            flagged: true
        })
    );
    // other letters stay
    std::fs::rename(
        md(root, user).join("cur").join(format!("{name}:2,FS")),
        md(root, user).join("cur").join(format!("{name}:2,FSTa")),
    )?;
    assert!(access.set_flags(user, &loc, Some(false), None).await?);
    assert_eq!(
        files(&md(root, user).join("cur")),
        vec![format!("{name}:2,FTa")]
    );
    assert_eq!(
        access.fetch(user, &loc, 1 << 20).await?.map(|f| f.raw),
        Some(text.clone().into_bytes())
    );

    assert!(access.delete(user, &loc).await?);
    assert_eq!(files(&md(root, user).join("cur")), Vec::<String>::new());
    assert_eq!(access.fetch(user, &loc, 1024).await?, None);
    assert_eq!(access.flags(user, &loc).await?, None);
    assert!(!access.set_flags(user, &loc, Some(true), None).await?);
    assert!(!access.delete(user, &loc).await?);
    assert_eq!(access.move_to(user, &loc, "Archive").await?, None);
    // a user without a Maildir at all
    assert_eq!(access.fetch("nobody@example.test", &loc, 1024).await?, None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maildir_move_and_append() -> Result {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    let user = "dora@example.test";
    let access = maildir_access(root);
    let name = deliver(
        root,
        user,
        "1700000001.M2P1.host",
        &message(user, "mv", "m2@x"),
    )?;
    let loc = Locator::Maildir {
        folder: "INBOX".into(),
        name: name.clone(),
    };
    assert!(access.set_flags(user, &loc, None, Some(true)).await?);

    let moved = access.move_to(user, &loc, "Archive.2024").await?;
    let want = Locator::Maildir {
        folder: "Archive.2024".into(),
        name: name.clone(),
    };
    assert_eq!(moved, Some(Moved::To(want.clone())));
    let archive = md(root, user).join(".Archive.2024");
    assert_eq!(files(&archive.join("cur")), vec![format!("{name}:2,F")]);
    assert!(archive.join("maildirfolder").is_file());
    assert!(archive.join("new").is_dir() && archive.join("tmp").is_dir());
    assert_eq!(
        access.fetch(user, &loc, 1024).await?,
        None,
        "old locator is gone"
    );
    assert!(access.fetch(user, &want, 1024).await?.is_some());
    assert_eq!(
        access.flags(user, &want).await?.map(|f| f.flagged),
        Some(true)
    );

    // non-ASCII folder: modified UTF-7 directory name, as Dovecot's Maildir++
    let Some(Moved::To(utf8)) = access.move_to(user, &want, "Entwürfe").await? else {
        panic!("not moved");
    };
    assert!(md(root, user).join(".Entw&APw-rfe").join("cur").is_dir());
    let Some(Moved::To(back)) = access.move_to(user, &utf8, "INBOX").await? else {
        panic!("not moved back");
    };
    assert_eq!(back, loc);
    assert_eq!(
        files(&md(root, user).join("cur")),
        vec![format!("{name}:2,F")]
    );

    // append: Sent made on first use; seen → cur/ with S, else new/
    let raw = message("bob@example.test", "sent", "s1@x").replace('\n', "\r\n");
    access.append(user, "Sent", raw.as_bytes(), true).await?;
    let sent = md(root, user).join(".Sent");
    let cur = files(&sent.join("cur"));
    assert_eq!(cur.len(), 1);
    assert!(cur[0].ends_with(".bramble:2,S"), "{cur:?}");
    assert_eq!(
        std::fs::read(sent.join("cur").join(&cur[0]))?,
        raw.as_bytes()
    );
    let base = cur[0].split(':').next().ok_or("no name")?.to_owned();
    let sent_loc = Locator::Maildir {
        folder: "Sent".into(),
        name: base,
    };
    assert_eq!(
        access.fetch(user, &sent_loc, 1 << 20).await?.map(|f| f.raw),
        Some(raw.clone().into_bytes())
    );
    access.append(user, "Sent", raw.as_bytes(), false).await?;
    assert_eq!(files(&sent.join("new")).len(), 1);
    assert_eq!(files(&sent.join("tmp")), Vec::<String>::new());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maildir_refuses_bad_names_and_links() -> Result {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("mail");
    let user = "dora@example.test";
    let access = maildir_access(&root);
    let name = deliver(
        &root,
        user,
        "1700000002.M3P1.host",
        &message(user, "x", "m3@x"),
    )?;
    let loc = |folder: &str, name: &str| Locator::Maildir {
        folder: folder.into(),
        name: name.into(),
    };

    for bad in ["../x", "a/b", ".", "..", "", "a:2,S", ".hidden"] {
        let e = access
            .fetch(user, &loc("INBOX", bad), 1024)
            .await
            .expect_err("an error");
        assert!(matches!(e, AccessError::BadName(_)), "{bad:?}: {e}");
    }
    for bad in ["../Sent", "a/b", ".x", "x.", "a..b", "a\nb", ""] {
        let e = access
            .move_to(user, &loc("INBOX", &name), bad)
            .await
            .expect_err("an error");
        assert!(matches!(e, AccessError::BadFolder { .. }), "{bad:?}: {e}");
        let e = access
            .fetch(user, &loc(bad, &name), 1024)
            .await
            .expect_err("an error");
        assert!(matches!(e, AccessError::BadFolder { .. }), "{bad:?}: {e}");
    }
    let e = access
        .fetch(
            user,
            &Locator::Imap {
                folder: "INBOX".into(),
                uid_validity: 1,
                uid: 1,
            },
            1024,
        )
        .await
        .expect_err("an error");
    assert!(matches!(e, AccessError::WrongStore { .. }), "{e}");

    // a link in new/ to a file outside is not a message
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "Subject: secret\r\n\r\nsecret\r\n")?;
    std::os::unix::fs::symlink(&secret, md(&root, user).join("new").join("link"))?;
    assert_eq!(access.fetch(user, &loc("INBOX", "link"), 1024).await?, None);
    assert!(!access.delete(user, &loc("INBOX", "link")).await?);
    assert!(secret.exists());

    // a folder that is a link to elsewhere is refused
    let elsewhere = dir.path().join("elsewhere");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(elsewhere.join(sub))?;
    }
    std::os::unix::fs::symlink(&elsewhere, md(&root, user).join(".Linked"))?;
    let e = access
        .append(user, "Linked", b"x", true)
        .await
        .expect_err("an error");
    eprintln!("a linked folder: {e}");
    assert!(e.to_string().contains("symbolic link"), "{e}");
    let e = access
        .move_to(user, &loc("INBOX", &name), "Linked")
        .await
        .expect_err("an error");
    assert!(matches!(e, AccessError::Maildir { .. }), "{e}");
    assert_eq!(files(&elsewhere.join("cur")), Vec::<String>::new());
    assert!(
        access
            .fetch(user, &loc("INBOX", &name), 1024)
            .await?
            .is_some(),
        "still there"
    );
    Ok(())
}
