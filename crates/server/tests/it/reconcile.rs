//! Reconciliation end to end, both ways: what the phone user does to a message (read, flagged,
//! deleted, moved) is done in the mailbox, and what another mail client does there reaches the
//! phone — unless the user's `reconcile` setting is off. On Dovecot (users u0031..u0040 of a
//! private stack are this file's) and on the embedded Maildir store.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bramble_device::Device;
use bramble_device::mail::{Change, MailStore, MessageSummary};
use bramble_store::MailSettings;
use bramble_testkit::MailStack;

use crate::access::{find, raw_flags, raw_login};
use crate::activation::{Site, dovecot_site_with};
use crate::mail::{WITHIN, activated, deliver, forwarded, message, sync};
use crate::support::Result;

/// How long nothing must happen, when nothing should.
const QUIET: Duration = Duration::from_secs(3);

/// The Message-ID `mail::message` gives a subject.
fn id_of(subject: &str) -> String {
    format!("{}@test", subject.replace(' ', "."))
}

/// Sends one message per subject to `email` through Postfix.
async fn send_all(stack: &MailStack, email: &str, subjects: &[&str]) -> Result {
    tokio::task::block_in_place(|| {
        for s in subjects {
            let text = message("gus@example.test", email, s, "Body.");
            stack
                .send_mail("gus@example.test", email, &text)
                .map_err(|e| format!("{e:#}"))?;
        }
        Ok(())
    })
}

/// Syncs the device until `check` holds for its inbox (every folder, without deleted
/// messages).
async fn device_until(
    device: &mut Device,
    store: &MailStore,
    what: &str,
    check: impl Fn(&[MessageSummary]) -> bool,
) -> Result {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        sync(device, store, Duration::from_millis(300)).await?;
        let inbox = store.inbox().await?;
        if check(&inbox) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{what}: not on the device within {WITHIN:?}: {inbox:#?}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The message with `subject` on the device.
fn by_subject<'a>(inbox: &'a [MessageSummary], subject: &str) -> Option<&'a MessageSummary> {
    inbox.iter().find(|m| m.subject == subject)
}

/// Syncs until every subject is on the device; returns subject → RefID.
async fn on_device(
    device: &mut Device,
    store: &MailStore,
    subjects: &[&str],
) -> Result<HashMap<String, u64>> {
    device_until(device, store, "the new mail", |inbox| {
        subjects.iter().all(|s| by_subject(inbox, s).is_some())
    })
    .await?;
    Ok(store
        .inbox()
        .await?
        .into_iter()
        .map(|m| (m.subject, m.ref_id))
        .collect())
}

/// The one UID in `folder` of the message with `subject`; `None` when it is not there.
async fn uid_in(
    stack: &MailStack,
    email: &str,
    folder: &str,
    subject: &str,
) -> Result<Option<u32>> {
    Ok(match find(stack, email, folder, &id_of(subject)).await? {
        Some((_, uids)) => uids.first().copied(),
        None => None,
    })
}

/// Waits until `check` says the mailbox is as expected.
async fn mailbox_until<F, Fut>(what: &str, mut check: F) -> Result
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + WITHIN;
    while !check().await? {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{what}: not in the mailbox within {WITHIN:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn has_flag(stack: &MailStack, email: &str, subject: &str, flag: &str) -> Result<bool> {
    let uid = uid_in(stack, email, "INBOX", subject)
        .await?
        .ok_or_else(|| format!("{subject:?} is not in INBOX"))?;
    Ok(raw_flags(stack, email, "INBOX", uid)
        .await?
        .iter()
        .any(|f| f == flag))
}

fn reconcile_off() -> MailSettings {
    MailSettings {
        reconcile: false,
        ..MailSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_changes_are_reconciled_both_ways() -> Result {
    let _ = crate::support::init_logs();
    let (site, stack) = dovecot_site_with(50, |_| {}).await?;
    let email = "u0031@example.test";
    let mut device = activated(&site, email, "u0031-phone").await?;
    let store = device.mail_store().await?;
    let mut events = site.server().events();
    let subjects = [
        "to seen",
        "to flagged",
        "to deleted",
        "to moved",
        "from seen",
        "from flagged",
        "from expunged",
        "from moved",
        "from trashed",
    ];
    send_all(&stack, email, &subjects).await?;
    forwarded(&mut events, email, subjects.len()).await?;
    let refs = on_device(&mut device, &store, &subjects).await?;

    // device to server
    store.mark(refs["to seen"], Change::Seen(true)).await?;
    store
        .mark(refs["to flagged"], Change::Flagged(true))
        .await?;
    store
        .mark(refs["to deleted"], Change::Deleted(true))
        .await?;
    store
        .mark(refs["to moved"], Change::MovedTo("Archive".into()))
        .await?;
    let report = sync(&mut device, &store, Duration::from_millis(300)).await?;
    assert_eq!(report.changes_sent, 4, "{report:?}");
    let s = &stack;
    mailbox_until("\\Seen set", || has_flag(s, email, "to seen", "Seen")).await?;
    mailbox_until("\\Flagged set", || {
        has_flag(s, email, "to flagged", "Flagged")
    })
    .await?;
    mailbox_until("the deleted message expunged", || async {
        Ok(uid_in(s, email, "INBOX", "to deleted").await?.is_none())
    })
    .await?;
    mailbox_until("the message moved to Archive", || async {
        Ok(uid_in(s, email, "INBOX", "to moved").await?.is_none()
            && uid_in(s, email, "Archive", "to moved").await?.is_some())
    })
    .await?;
    assert!(!has_flag(s, email, "to flagged", "Seen").await?);

    // server to device: another mail client
    let uid = |subject: &'static str| async move {
        let found: Result<u32> = match uid_in(s, email, "INBOX", subject).await {
            Ok(Some(u)) => Ok(u),
            Ok(None) => Err(format!("{subject:?} is not in INBOX").into()),
            Err(e) => Err(e),
        };
        found
    };
    let (seen, flagged, expunged, moved, trashed) = (
        uid("from seen").await?,
        uid("from flagged").await?,
        uid("from expunged").await?,
        uid("from moved").await?,
        uid("from trashed").await?,
    );
    let mut other = raw_login(&stack, email).await?;
    other.select("INBOX").await?;
    use futures::TryStreamExt;
    for (uid, what) in [
        (seen, "+FLAGS (\\Seen)"),
        (flagged, "+FLAGS (\\Flagged)"),
        (expunged, "+FLAGS (\\Deleted)"),
        (trashed, "+FLAGS (\\Deleted)"),
    ] {
        other
            .uid_store(uid.to_string(), what)
            .await?
            .try_collect::<Vec<_>>()
            .await?;
    }
    other
        .uid_expunge(expunged.to_string())
        .await?
        .try_collect::<Vec<_>>()
        .await?;
    other.uid_mv(moved.to_string(), "Archive").await?;
    device_until(&mut device, &store, "the other client's changes", |inbox| {
        by_subject(inbox, "from seen").is_some_and(|m| m.seen && !m.flagged)
            && by_subject(inbox, "from flagged").is_some_and(|m| m.flagged && !m.seen)
            && by_subject(inbox, "from expunged").is_none()
            && by_subject(inbox, "from moved").is_none()
            && by_subject(inbox, "from trashed").is_none()
    })
    .await?;
    // and back: unread again
    other
        .uid_store(seen.to_string(), "-FLAGS (\\Seen)")
        .await?
        .try_collect::<Vec<_>>()
        .await?;
    other.logout().await?;
    device_until(&mut device, &store, "unread again", |inbox| {
        by_subject(inbox, "from seen").is_some_and(|m| !m.seen)
    })
    .await?;
    // what the device did itself stands
    let inbox = store.inbox().await?;
    assert!(
        by_subject(&inbox, "to seen").is_some_and(|m| m.seen),
        "{inbox:#?}"
    );
    assert!(
        by_subject(&inbox, "to flagged").is_some_and(|m| m.flagged),
        "{inbox:#?}"
    );
    assert!(by_subject(&inbox, "to deleted").is_none(), "{inbox:#?}");
    assert!(
        by_subject(&inbox, "to moved").is_some_and(|m| m.folder == "Archive"),
        "{inbox:#?}"
    );
    site.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_reconciliation_off_changes_nothing() -> Result {
    let _ = crate::support::init_logs();
    let (site, stack) = dovecot_site_with(50, |_| {}).await?;
    let email = "u0032@example.test";
    let mut device = activated(&site, email, "u0032-phone").await?;
    let store = device.mail_store().await?;
    let mut events = site.server().events();
    let subjects = ["off read here", "off flagged there", "off expunged there"];
    send_all(&stack, email, &subjects).await?;
    forwarded(&mut events, email, subjects.len()).await?;
    let refs = on_device(&mut device, &store, &subjects).await?;
    site.server()
        .store()
        .set_mail_settings(email, &reconcile_off())
        .await?;

    store
        .mark(refs["off read here"], Change::Seen(true))
        .await?;
    sync(&mut device, &store, Duration::from_millis(300)).await?;
    let s = &stack;
    let flagged = uid_in(s, email, "INBOX", "off flagged there")
        .await?
        .ok_or("not in INBOX")?;
    let expunged = uid_in(s, email, "INBOX", "off expunged there")
        .await?
        .ok_or("not in INBOX")?;
    let mut other = raw_login(&stack, email).await?;
    other.select("INBOX").await?;
    use futures::TryStreamExt;
    other
        .uid_store(flagged.to_string(), "+FLAGS (\\Flagged)")
        .await?
        .try_collect::<Vec<_>>()
        .await?;
    other
        .uid_store(expunged.to_string(), "+FLAGS (\\Deleted)")
        .await?
        .try_collect::<Vec<_>>()
        .await?;
    other
        .uid_expunge(expunged.to_string())
        .await?
        .try_collect::<Vec<_>>()
        .await?;
    other.logout().await?;

    let until = tokio::time::Instant::now() + QUIET;
    while tokio::time::Instant::now() < until {
        let report = sync(&mut device, &store, Duration::from_millis(300)).await?;
        assert_eq!(report.changes_received, 0, "{report:?}");
    }
    assert!(!has_flag(s, email, "off read here", "Seen").await?);
    let inbox = store.inbox().await?;
    assert!(by_subject(&inbox, "off read here").is_some_and(|m| m.seen));
    assert!(by_subject(&inbox, "off flagged there").is_some_and(|m| !m.flagged));
    assert!(
        by_subject(&inbox, "off expunged there").is_some(),
        "{inbox:#?}"
    );
    site.shutdown().await;
    Ok(())
}

/// The file in `email`'s Maildir (`new/` or `cur/` of `folder`: "" for INBOX, else the
/// Maildir++ directory such as `.Archive`) whose base name is `base`.
fn file_of(root: &Path, email: &str, folder: &str, base: &str) -> Result<Option<PathBuf>> {
    let dir = root.join(email).join("Maildir").join(folder);
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in entries {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.split(':').next() == Some(base) {
                return Ok(Some(e.path()));
            }
        }
    }
    Ok(None)
}

/// The info part of `base`'s file in INBOX (`2,S`), `None` when there is none.
fn info_of(root: &Path, email: &str, base: &str) -> Result<Option<String>> {
    Ok(file_of(root, email, "", base)?.and_then(|p| {
        p.file_name()?
            .to_string_lossy()
            .split_once(':')
            .map(|(_, i)| i.to_owned())
    }))
}

/// Renames `base`'s file in INBOX into `cur/` with the info part `2,FLAGS`, as a mail client
/// does.
fn set_info(root: &Path, email: &str, base: &str, flags: &str) -> Result {
    let from = file_of(root, email, "", base)?.ok_or_else(|| format!("no file {base}"))?;
    let to = root
        .join(email)
        .join("Maildir/cur")
        .join(format!("{base}:2,{flags}"));
    std::fs::rename(from, to)?;
    Ok(())
}

/// Delivers one message per subject, named `PREFIX.N.host`; returns the base names.
fn deliver_all(root: &Path, email: &str, prefix: u32, subjects: &[&str]) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for (i, s) in subjects.iter().enumerate() {
        let name = format!("{prefix}{i:03}.m{i}.host");
        deliver(
            root,
            email,
            &name,
            &message("gus@x.test", email, s, "Body."),
        )?;
        names.push(name);
    }
    Ok(names)
}

async fn files_until(what: &str, mut check: impl FnMut() -> Result<bool>) -> Result {
    let deadline = tokio::time::Instant::now() + WITHIN;
    while !check()? {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{what}: not in the Maildir within {WITHIN:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test]
async fn maildir_changes_are_reconciled_both_ways() -> Result {
    let _ = crate::support::init_logs();
    let site = Site::start().await?;
    let email = "rita@example.com";
    let root = site.dir.path().join("mail");
    let mut device = activated(&site, email, "rita-phone").await?;
    let store = device.mail_store().await?;
    let mut events = site.server().events();
    let subjects = [
        "to seen",
        "to flagged",
        "to deleted",
        "to moved",
        "from seen",
        "from flagged",
        "from deleted",
        "from trashed",
    ];
    let names = deliver_all(&root, email, 3000, &subjects)?;
    let name: HashMap<&str, &str> = subjects
        .iter()
        .copied()
        .zip(names.iter().map(String::as_str))
        .collect();
    forwarded(&mut events, email, subjects.len()).await?;
    let refs = on_device(&mut device, &store, &subjects).await?;

    // device to server
    store.mark(refs["to seen"], Change::Seen(true)).await?;
    store
        .mark(refs["to flagged"], Change::Flagged(true))
        .await?;
    store
        .mark(refs["to deleted"], Change::Deleted(true))
        .await?;
    store
        .mark(refs["to moved"], Change::MovedTo("Archive".into()))
        .await?;
    sync(&mut device, &store, Duration::from_millis(300)).await?;
    let r = root.as_path();
    files_until("S on the file", || {
        Ok(info_of(r, email, name["to seen"])?.as_deref() == Some("2,S"))
    })
    .await?;
    files_until("F on the file", || {
        Ok(info_of(r, email, name["to flagged"])?.as_deref() == Some("2,F"))
    })
    .await?;
    files_until("the file deleted", || {
        Ok(file_of(r, email, "", name["to deleted"])?.is_none())
    })
    .await?;
    files_until("the file moved to .Archive", || {
        Ok(file_of(r, email, "", name["to moved"])?.is_none()
            && file_of(r, email, ".Archive", name["to moved"])?.is_some())
    })
    .await?;

    // server to device: another mail client (or Dovecot) on the same Maildir
    set_info(r, email, name["from seen"], "S")?;
    set_info(r, email, name["from flagged"], "F")?;
    let deleted = file_of(r, email, "", name["from deleted"])?.ok_or("no file")?;
    std::fs::remove_file(deleted)?;
    set_info(r, email, name["from trashed"], "ST")?;
    device_until(&mut device, &store, "the other client's changes", |inbox| {
        by_subject(inbox, "from seen").is_some_and(|m| m.seen && !m.flagged)
            && by_subject(inbox, "from flagged").is_some_and(|m| m.flagged && !m.seen)
            && by_subject(inbox, "from deleted").is_none()
            && by_subject(inbox, "from trashed").is_none()
    })
    .await?;
    set_info(r, email, name["from seen"], "")?;
    device_until(&mut device, &store, "unread again", |inbox| {
        by_subject(inbox, "from seen").is_some_and(|m| !m.seen)
    })
    .await?;
    let inbox = store.inbox().await?;
    assert!(
        by_subject(&inbox, "to seen").is_some_and(|m| m.seen),
        "{inbox:#?}"
    );
    assert!(
        by_subject(&inbox, "to flagged").is_some_and(|m| m.flagged),
        "{inbox:#?}"
    );
    assert!(by_subject(&inbox, "to deleted").is_none(), "{inbox:#?}");
    assert!(
        by_subject(&inbox, "to moved").is_some_and(|m| m.folder == "Archive"),
        "{inbox:#?}"
    );
    site.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn maildir_reconciliation_off_changes_nothing() -> Result {
    let _ = crate::support::init_logs();
    let site = Site::start().await?;
    let email = "otto@example.com";
    let root = site.dir.path().join("mail");
    let mut device = activated(&site, email, "otto-phone").await?;
    let store = device.mail_store().await?;
    let mut events = site.server().events();
    let subjects = ["off read here", "off flagged there", "off deleted there"];
    let names = deliver_all(&root, email, 4000, &subjects)?;
    forwarded(&mut events, email, subjects.len()).await?;
    let refs = on_device(&mut device, &store, &subjects).await?;
    site.server()
        .store()
        .set_mail_settings(email, &reconcile_off())
        .await?;

    store
        .mark(refs["off read here"], Change::Seen(true))
        .await?;
    sync(&mut device, &store, Duration::from_millis(300)).await?;
    set_info(&root, email, &names[1], "F")?;
    let deleted = file_of(&root, email, "", &names[2])?.ok_or("no file")?;
    std::fs::remove_file(deleted)?;

    let until = tokio::time::Instant::now() + QUIET;
    while tokio::time::Instant::now() < until {
        let report = sync(&mut device, &store, Duration::from_millis(300)).await?;
        assert_eq!(report.changes_received, 0, "{report:?}");
    }
    assert_eq!(info_of(&root, email, &names[0])?.as_deref(), Some("2,"));
    let inbox = store.inbox().await?;
    assert!(by_subject(&inbox, "off read here").is_some_and(|m| m.seen));
    assert!(by_subject(&inbox, "off flagged there").is_some_and(|m| !m.flagged));
    assert!(
        by_subject(&inbox, "off deleted there").is_some(),
        "{inbox:#?}"
    );
    site.shutdown().await;
    Ok(())
}
