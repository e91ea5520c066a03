//! The directory import (seed 002's BlackBerry MailStore service): users are found in the
//! company's LDAP directory by name or mail address and added from it, and a periodic
//! synchronization keeps their names and addresses in step with the directory (a new address
//! through [`crate::admin::UserServices::change_email`], which moves what the running server
//! holds by address).
//!
//! Each user added from the directory keeps the entry's stable identifier (`entryUUID` by
//! default; `objectGUID` on Active Directory), so a renamed or re-addressed entry is still the
//! same user. An entry that disappears from the directory is reported, never deleted here: the
//! administrator decides (BES kept such users until someone removed them).
//!
//! Every answer from the directory is hostile: searches carry a size and a time limit, entries
//! are parsed without panicking (ldap3's own `SearchEntry::construct` panics on a malformed
//! entry), values are bounded, and each operation runs in its own task under a deadline, so a
//! misbehaving server makes an error for the administrator, never a stuck or crashed server.
//!
//! Owns: the LDAP connection and the mapping of entries to users. Must not touch: SQL (only
//! `bramble-store`'s methods), the HTTP surface (that is `admin::directory_api`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchOptions};
use serde::{Deserialize, Serialize};

use bramble_store::{StoreError, User};

use crate::admin::UserServices;

pub mod entry;

/// Entries read from a server in one synchronization at most, whatever the configuration says.
const MAX_SYNC_ENTRIES: u32 = 1_000_000;
/// Entries in one page of a paged search.
const PAGE_SIZE: i32 = 500;

/// `[server.directory]`: where the directory is and how its entries map to users.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// Where people are searched, e.g. `ou=people,dc=example,dc=com`.
    pub base_dn: String,
    /// Who binds; absent: an anonymous bind.
    #[serde(default)]
    pub bind_dn: Option<String>,
    /// Its password. Prefer `bind_password_file` or `BRAMBLE_SERVER__DIRECTORY__BIND_PASSWORD`.
    #[serde(default)]
    pub bind_password: Option<String>,
    /// A file holding the password.
    #[serde(default)]
    pub bind_password_file: Option<PathBuf>,
    /// StartTLS on an `ldap://` URL.
    #[serde(default)]
    pub starttls: bool,
    /// Which entries are people. Default `(objectClass=inetOrgPerson)`; Active Directory:
    /// `(&(objectCategory=person)(objectClass=user))`.
    #[serde(default = "default_filter")]
    pub filter: String,
    /// The mail address attribute. Default `mail`.
    #[serde(default = "default_mail")]
    pub mail_attribute: String,
    /// The display name attribute. Default `cn`; Active Directory: `displayName`.
    #[serde(default = "default_name")]
    pub name_attribute: String,
    /// The stable identifier attribute. Default `entryUUID`; Active Directory: `objectGUID`.
    #[serde(default = "default_id")]
    pub id_attribute: String,
    /// How long one operation may take. Default "10s".
    #[serde(default = "default_timeout", with = "crate::config::duration_text")]
    pub timeout: Duration,
    /// How often names and addresses are brought in step; "0s": only when asked
    /// (`bramble admin directory sync`). Default "1h".
    #[serde(default = "default_interval", with = "crate::config::duration_text")]
    pub sync_interval: Duration,
    /// Most entries one synchronization reads. Default 100000.
    #[serde(default = "default_sync_limit")]
    pub sync_limit: u32,
    /// Whether a synchronization gives a user the new address their entry now has (their
    /// device, mail and settings stay theirs; the mailbox is watched under the new address
    /// and the phone gets its service books again). Default true; false: changed addresses
    /// are only reported, for an administrator to apply with `PATCH /users/{email}`.
    #[serde(default = "default_true")]
    pub follow_address_changes: bool,
}

fn default_true() -> bool {
    true
}

fn default_filter() -> String {
    "(objectClass=inetOrgPerson)".into()
}
fn default_mail() -> String {
    "mail".into()
}
fn default_name() -> String {
    "cn".into()
}
fn default_id() -> String {
    "entryUUID".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_interval() -> Duration {
    Duration::from_secs(3600)
}
fn default_sync_limit() -> u32 {
    100_000
}

/// What went wrong with the directory, in an administrator's words.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The directory cannot be reached, refused the bind, or failed a search.
    #[error("the directory at {url} {what}")]
    Unavailable {
        /// The configured URL.
        url: String,
        /// What happened.
        what: String,
    },
    /// The directory answered with more entries than the limit.
    #[error(
        "the directory holds more than {limit} entries matching {filter}; narrow \
         [server.directory] filter or raise sync_limit"
    )]
    TooMany {
        /// The limit.
        limit: u32,
        /// The filter.
        filter: String,
    },
    /// The configuration database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One person of the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Entry {
    /// The entry's DN.
    pub dn: String,
    /// Its stable identifier (the id attribute; binary values in hex).
    pub id: String,
    /// Its mail address, lower-cased; absent when the entry has none.
    pub mail: Option<String>,
    /// Its display name.
    pub name: Option<String>,
}

/// A connection recipe for one directory.
#[derive(Debug, Clone)]
pub struct Directory {
    cfg: DirectoryConfig,
    password: Option<String>,
}

impl Directory {
    /// Checks the configuration and reads the password file.
    ///
    /// # Errors
    /// A sentence for the administrator naming what to fix.
    pub fn new(cfg: DirectoryConfig) -> Result<Directory, String> {
        let scheme = cfg
            .url
            .split_once("://")
            .map(|(s, rest)| (s.to_ascii_lowercase(), rest))
            .filter(|(_, rest)| !rest.is_empty());
        match scheme.as_ref().map(|(s, _)| s.as_str()) {
            Some("ldap") => {}
            Some("ldaps") if !cfg.starttls => {}
            Some("ldaps") => {
                return Err(
                    "[server.directory] starttls is for ldap:// URLs; ldaps:// is \
                            TLS from the start"
                        .into(),
                );
            }
            _ => {
                return Err(format!(
                    "[server.directory] url {:?} is not ldap://host:port or ldaps://host:port",
                    cfg.url
                ));
            }
        }
        if cfg.base_dn.trim().is_empty() {
            return Err("[server.directory] base_dn is empty".into());
        }
        ldap3::parse_filter(&cfg.filter).map_err(|()| {
            format!(
                "[server.directory] filter {:?} is not an LDAP filter (RFC 4515)",
                cfg.filter
            )
        })?;
        for (key, attr) in [
            ("mail_attribute", &cfg.mail_attribute),
            ("name_attribute", &cfg.name_attribute),
            ("id_attribute", &cfg.id_attribute),
        ] {
            if attr.is_empty()
                || !attr
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ';')
            {
                return Err(format!(
                    "[server.directory] {key} {attr:?} is not an attribute name"
                ));
            }
        }
        if cfg.sync_limit == 0 || cfg.sync_limit > MAX_SYNC_ENTRIES {
            return Err(format!(
                "[server.directory] sync_limit must be 1 to {MAX_SYNC_ENTRIES}"
            ));
        }
        let password = match (&cfg.bind_password, &cfg.bind_password_file) {
            (Some(_), Some(_)) => {
                return Err(
                    "[server.directory] give bind_password or bind_password_file, not both".into(),
                );
            }
            (Some(p), None) => Some(p.clone()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| {
                        format!(
                            "[server.directory] bind_password_file {}: {e}",
                            path.display()
                        )
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
            ),
            (None, None) => None,
        };
        if cfg.bind_dn.is_some() && password.is_none() {
            return Err(
                "[server.directory] bind_dn needs bind_password or bind_password_file".into(),
            );
        }
        Ok(Directory { cfg, password })
    }

    /// The configuration in effect.
    pub fn config(&self) -> &DirectoryConfig {
        &self.cfg
    }

    /// People whose name or mail address contains `query` (all people when it is empty), at
    /// most `limit`; `true` when the directory holds more.
    ///
    /// # Errors
    /// [`DirectoryError::Unavailable`].
    pub async fn search(
        &self,
        query: &str,
        limit: u32,
    ) -> Result<(Vec<Entry>, bool), DirectoryError> {
        let filter = if query.trim().is_empty() {
            self.cfg.filter.clone()
        } else {
            let q = ldap3::ldap_escape(query.trim());
            format!(
                "(&{}(|({}=*{q}*)({}=*{q}*)))",
                self.cfg.filter, self.cfg.name_attribute, self.cfg.mail_attribute
            )
        };
        let limit = limit.clamp(1, 1000);
        let (mut entries, truncated) = self.run(filter, Some(limit + 1)).await?;
        let more = truncated || entries.len() > limit as usize;
        entries.truncate(limit as usize);
        entries.sort_by(|a, b| a.name.cmp(&b.name).then(a.mail.cmp(&b.mail)));
        Ok((entries, more))
    }

    /// The entry with this stable identifier, if the directory has it.
    ///
    /// # Errors
    /// [`DirectoryError::Unavailable`].
    pub async fn lookup(&self, id: &str) -> Result<Option<Entry>, DirectoryError> {
        let filter = format!(
            "(&{}({}={}))",
            self.cfg.filter,
            self.cfg.id_attribute,
            ldap3::ldap_escape(id)
        );
        let (entries, _) = self.run(filter, Some(2)).await?;
        Ok(entries.into_iter().find(|e| e.id == id))
    }

    /// Every person, up to `sync_limit`.
    ///
    /// # Errors
    /// [`DirectoryError::Unavailable`], [`DirectoryError::TooMany`].
    pub async fn all(&self) -> Result<Vec<Entry>, DirectoryError> {
        let (entries, truncated) = self.run(self.cfg.filter.clone(), None).await?;
        if truncated || entries.len() > self.cfg.sync_limit as usize {
            return Err(DirectoryError::TooMany {
                limit: self.cfg.sync_limit,
                filter: self.cfg.filter.clone(),
            });
        }
        Ok(entries)
    }

    fn unavailable(&self, what: impl Into<String>) -> DirectoryError {
        DirectoryError::Unavailable {
            url: self.cfg.url.clone(),
            what: what.into(),
        }
    }

    /// One search in its own task (a panic in the LDAP library becomes an error) under the
    /// deadline. `size`: a size limit for the server (a short search); `None`: a paged
    /// search of up to `sync_limit` entries. Returns the entries and whether there were more.
    async fn run(
        &self,
        filter: String,
        size: Option<u32>,
    ) -> Result<(Vec<Entry>, bool), DirectoryError> {
        let me = self.clone();
        let deadline = match size {
            Some(_) => self.cfg.timeout,
            // a full read may take a page per timeout
            None => self.cfg.timeout * (self.cfg.sync_limit / PAGE_SIZE as u32 + 1).min(60),
        };
        let task = tokio::spawn(async move { me.search_now(&filter, size).await });
        match tokio::time::timeout(deadline, task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(self.unavailable(format!(
                "sent an answer Bramble cannot read ({e}); check the directory server's logs"
            ))),
            Err(_) => Err(self.unavailable(format!(
                "did not answer within {}",
                humantime::format_duration(deadline)
            ))),
        }
    }

    async fn search_now(
        &self,
        filter: &str,
        size: Option<u32>,
    ) -> Result<(Vec<Entry>, bool), DirectoryError> {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(self.cfg.timeout)
            .set_starttls(self.cfg.starttls);
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.cfg.url)
            .await
            .map_err(|e| self.unavailable(format!("cannot be reached: {e}")))?;
        ldap3::drive!(conn);
        let bind = match (&self.cfg.bind_dn, &self.password) {
            (Some(dn), Some(pw)) => ldap.simple_bind(dn, pw).await,
            _ => ldap.simple_bind("", "").await,
        };
        match bind {
            Ok(r) if r.rc == 0 => {}
            Ok(r) if r.rc == 49 => {
                return Err(self.unavailable(format!(
                    "refused the bind as {} (wrong bind_dn or password)",
                    self.cfg.bind_dn.as_deref().unwrap_or("anonymous")
                )));
            }
            Ok(r) => return Err(self.unavailable(format!("refused the bind: {r}"))),
            Err(e) => return Err(self.unavailable(format!("failed the bind: {e}"))),
        }
        let attrs = vec![
            self.cfg.mail_attribute.clone(),
            self.cfg.name_attribute.clone(),
            self.cfg.id_attribute.clone(),
        ];
        let secs = i32::try_from(self.cfg.timeout.as_secs().max(1)).unwrap_or(i32::MAX);
        let cap = size.unwrap_or(self.cfg.sync_limit);
        let mut opts = SearchOptions::new().timelimit(secs);
        if let Some(n) = size {
            opts = opts.sizelimit(i32::try_from(n).unwrap_or(i32::MAX));
        }
        let adapters: Vec<Box<dyn Adapter<'_, _, _>>> = match size {
            Some(_) => vec![Box::new(EntriesOnly::new())],
            None => vec![
                Box::new(EntriesOnly::new()),
                Box::new(PagedResults::new(PAGE_SIZE)),
            ],
        };
        let mut stream = ldap
            .with_search_options(opts)
            .with_timeout(self.cfg.timeout)
            .streaming_search_with(adapters, &self.cfg.base_dn, Scope::Subtree, filter, attrs)
            .await
            .map_err(|e| self.unavailable(format!("failed the search: {e}")))?;
        let mut out = Vec::new();
        let mut more = false;
        loop {
            match stream.next().await {
                Ok(Some(raw)) => {
                    if out.len() >= cap as usize {
                        more = true;
                        break;
                    }
                    match parse_entry(raw, &self.cfg) {
                        Some(e) => out.push(e),
                        None => tracing::warn!(
                            "a directory entry without a usable {} was left out",
                            self.cfg.id_attribute
                        ),
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(self.unavailable(format!("failed the search: {e}"))),
            }
        }
        if !more {
            let res = stream.finish().await;
            match res.rc {
                0 => {}
                // sizeLimitExceeded: the entries so far are what was asked for
                4 => more = true,
                32 => {
                    return Err(self.unavailable(format!(
                        "has no entry {} (check [server.directory] base_dn)",
                        self.cfg.base_dn
                    )));
                }
                _ => return Err(self.unavailable(format!("failed the search: {res}"))),
            }
        }
        let _ = ldap.unbind().await;
        Ok((out, more))
    }
}

fn parse_entry(raw: ldap3::ResultEntry, cfg: &DirectoryConfig) -> Option<Entry> {
    let e = entry::parse(
        raw.0,
        &entry::Attributes {
            id: &cfg.id_attribute,
            mail: &cfg.mail_attribute,
            name: &cfg.name_attribute,
        },
    )?;
    Some(Entry {
        dn: e.dn,
        id: e.id,
        mail: e.mail,
        name: e.name,
    })
}

/// What one synchronization found and did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SyncReport {
    /// When it ran (RFC 3339).
    pub at: String,
    /// Users added from the directory that were compared with their entry.
    pub checked: u32,
    /// Names changed to follow the directory.
    pub renamed: Vec<Change>,
    /// Addresses changed to follow the directory (`email` is the new one).
    pub readdressed: Vec<Change>,
    /// Users whose entry now gives another mail address that was not applied: with
    /// `follow_address_changes = false`, or when another user has that address already
    /// (`reason` says which).
    pub address_changed: Vec<Change>,
    /// Users whose entry is gone from the directory (kept; delete them if they left).
    pub missing: Vec<String>,
    /// Why the synchronization failed, if it did (nothing was changed then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One difference between a user and their directory entry.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Change {
    /// The user.
    pub email: String,
    /// What the server had.
    pub from: Option<String>,
    /// What the directory says.
    pub to: Option<String>,
    /// Why it was not applied, for a change only reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The audit log's actor for what a synchronization changes.
pub const SYNC_ACTOR: &str = "directory synchronization";

/// Brings the names and addresses of the users added from the directory in step with their
/// entries (addresses only with `follow_address_changes`), and reports entries that are
/// gone. Each change is written to the audit log.
///
/// # Errors
/// When the directory cannot be read (nothing is changed then) or the database fails.
pub async fn synchronize(
    users_svc: &UserServices,
    dir: &Directory,
) -> Result<SyncReport, DirectoryError> {
    let store = &users_svc.store;
    let users: Vec<User> = store
        .list_users()
        .await?
        .into_iter()
        .filter(|u| u.directory_id.is_some())
        .collect();
    let entries = dir.all().await?;
    let by_id: HashMap<&str, &Entry> = entries.iter().map(|e| (e.id.as_str(), e)).collect();
    let mut report = SyncReport {
        at: crate::admin::rfc3339(bramble_store::now_ms()),
        ..SyncReport::default()
    };
    for u in &users {
        let Some(id) = u.directory_id.as_deref() else {
            continue;
        };
        report.checked += 1;
        let Some(entry) = by_id.get(id) else {
            report.missing.push(u.email.clone());
            continue;
        };
        if entry.name.is_some() && entry.name != u.display_name {
            match store
                .set_display_name(&u.email, entry.name.as_deref())
                .await
            {
                Ok(()) => {
                    let change = Change {
                        email: u.email.clone(),
                        from: u.display_name.clone(),
                        to: entry.name.clone(),
                        reason: None,
                    };
                    users_svc
                        .audit_own(
                            SYNC_ACTOR,
                            "Rename user",
                            &u.email,
                            format!(
                                "display name {} -> {}",
                                change.from.as_deref().unwrap_or("(none)"),
                                change.to.as_deref().unwrap_or("(none)")
                            ),
                        )
                        .await;
                    report.renamed.push(change);
                }
                // deleted meanwhile
                Err(StoreError::NoSuchUser { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let Some(mail) = entry.mail.as_deref().filter(|m| *m != u.email) else {
            continue;
        };
        let mut change = Change {
            email: u.email.clone(),
            from: Some(u.email.clone()),
            to: Some(mail.to_owned()),
            reason: None,
        };
        if !dir.cfg.follow_address_changes {
            change.reason = Some("follow_address_changes is off".into());
            report.address_changed.push(change);
            continue;
        }
        match users_svc.change_email(&u.email, mail, None).await {
            Ok(now) => {
                users_svc
                    .audit_own(
                        SYNC_ACTOR,
                        "Change user address",
                        &now.email,
                        format!("address {} -> {}", u.email, now.email),
                    )
                    .await;
                change.email = now.email;
                report.readdressed.push(change);
            }
            Err(StoreError::UserExists { email }) => {
                change.reason = Some(format!("another user has {email} already"));
                report.address_changed.push(change);
            }
            Err(StoreError::InvalidEmail { .. }) => {
                change.reason = Some("the directory's address is not a valid address".into());
                report.address_changed.push(change);
            }
            Err(StoreError::NoSuchUser { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    tracing::info!(
        checked = report.checked,
        renamed = report.renamed.len(),
        readdressed = report.readdressed.len(),
        address_changed = report.address_changed.len(),
        missing = report.missing.len(),
        "directory synchronized"
    );
    Ok(report)
}

/// The directory as the server runs it: the connection recipe, the last synchronization's
/// report, and one synchronization at a time (a periodic one and one an administrator asked for
/// never run together).
#[derive(Debug)]
pub struct DirectoryService {
    dir: Directory,
    last: std::sync::Mutex<Option<SyncReport>>,
    running: tokio::sync::Mutex<()>,
}

impl DirectoryService {
    /// A service for this directory.
    pub fn new(dir: Directory) -> DirectoryService {
        DirectoryService {
            dir,
            last: std::sync::Mutex::new(None),
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// The directory.
    pub fn directory(&self) -> &Directory {
        &self.dir
    }

    /// The report of the last synchronization, if one ran since the server started.
    pub fn last(&self) -> Option<SyncReport> {
        self.last.lock().ok().and_then(|l| l.clone())
    }

    /// Synchronizes now (after the one running, if any), and keeps the report; a failure is
    /// kept as a report with its error.
    ///
    /// # Errors
    /// As [`synchronize`].
    pub async fn sync_now(&self, users: &UserServices) -> Result<SyncReport, DirectoryError> {
        let _one = self.running.lock().await;
        let result = synchronize(users, &self.dir).await;
        let kept = match &result {
            Ok(r) => r.clone(),
            Err(e) => {
                tracing::warn!("directory synchronization failed: {e}");
                SyncReport {
                    at: crate::admin::rfc3339(bramble_store::now_ms()),
                    error: Some(e.to_string()),
                    ..SyncReport::default()
                }
            }
        };
        if let Ok(mut l) = self.last.lock() {
            *l = Some(kept);
        }
        result
    }

    /// Synchronizes every `sync_interval` (never when it is zero); the task of `bramble serve`.
    pub async fn run(self: std::sync::Arc<Self>, users: UserServices) {
        let every = self.dir.cfg.sync_interval;
        if every.is_zero() {
            return;
        }
        loop {
            tokio::time::sleep(every).await;
            // the error is in the report and the log
            let _ = self.sync_now(&users).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> DirectoryConfig {
        DirectoryConfig {
            url: "ldap://127.0.0.1:389".into(),
            base_dn: "dc=example,dc=test".into(),
            bind_dn: None,
            bind_password: None,
            bind_password_file: None,
            starttls: false,
            filter: default_filter(),
            mail_attribute: default_mail(),
            name_attribute: default_name(),
            id_attribute: default_id(),
            timeout: default_timeout(),
            sync_interval: default_interval(),
            sync_limit: default_sync_limit(),
            follow_address_changes: true,
        }
    }

    #[test]
    fn bad_configurations_say_what_to_fix() {
        assert!(Directory::new(cfg()).is_ok());
        let e = Directory::new(DirectoryConfig {
            url: "http://x".into(),
            ..cfg()
        })
        .expect_err("refused");
        assert!(e.contains("is not ldap://host:port"), "{e}");
        let e = Directory::new(DirectoryConfig {
            filter: "(objectClass=person".into(),
            ..cfg()
        })
        .expect_err("refused");
        assert!(e.contains("not an LDAP filter"), "{e}");
        let e = Directory::new(DirectoryConfig {
            bind_dn: Some("cn=x".into()),
            ..cfg()
        })
        .expect_err("refused");
        assert!(e.contains("needs bind_password"), "{e}");
        let e = Directory::new(DirectoryConfig {
            mail_attribute: "mail)(x".into(),
            ..cfg()
        })
        .expect_err("refused");
        assert!(e.contains("not an attribute name"), "{e}");
    }

    fn tag(id: u64, payload: ldap3::asn1::PL) -> ldap3::asn1::StructureTag {
        ldap3::asn1::StructureTag {
            class: ldap3::asn1::TagClass::Universal,
            id,
            payload,
        }
    }

    fn prim(b: &[u8]) -> ldap3::asn1::StructureTag {
        tag(4, ldap3::asn1::PL::P(b.to_vec()))
    }

    fn cons(v: Vec<ldap3::asn1::StructureTag>) -> ldap3::asn1::StructureTag {
        tag(16, ldap3::asn1::PL::C(v))
    }

    fn attr(name: &str, vals: &[&[u8]]) -> ldap3::asn1::StructureTag {
        cons(vec![
            prim(name.as_bytes()),
            cons(vals.iter().map(|v| prim(v)).collect()),
        ])
    }

    fn entry(parts: Vec<ldap3::asn1::StructureTag>) -> ldap3::ResultEntry {
        ldap3::ResultEntry::new(tag(4, ldap3::asn1::PL::C(parts)))
    }

    #[test]
    fn entries_are_parsed_without_trusting_them() {
        let good = entry(vec![
            prim(b"uid=a,dc=example,dc=test"),
            cons(vec![
                attr("entryUUID", &[b"1234"]),
                attr("mail", &[b"A@Example.TEST"]),
                attr("cn", &[b"Alice"]),
            ]),
        ]);
        let e = parse_entry(good, &cfg()).expect("parsed");
        assert_eq!(e.id, "1234");
        assert_eq!(e.mail.as_deref(), Some("a@example.test"));
        assert_eq!(e.name.as_deref(), Some("Alice"));

        // binary identifiers become hex; no mail is kept as none
        let bin = entry(vec![
            prim(b"cn=b"),
            cons(vec![attr("objectGUID", &[&[0xff, 0x00, 0x10]])]),
        ]);
        let e = parse_entry(
            bin,
            &DirectoryConfig {
                id_attribute: "objectGUID".into(),
                ..cfg()
            },
        )
        .expect("parsed");
        assert_eq!((e.id.as_str(), e.mail), ("ff0010", None));

        // malformed shapes and missing identifiers are left out, never a panic
        let cases = vec![
            entry(vec![]),
            entry(vec![prim(b"cn=c")]),
            entry(vec![prim(b"cn=c"), prim(b"not a sequence")]),
            entry(vec![prim(b"cn=c"), cons(vec![prim(b"x")])]),
            entry(vec![
                prim(b"cn=c"),
                cons(vec![attr("mail", &[b"c@example.test"])]),
            ]),
            entry(vec![prim(&[0xff]), cons(vec![attr("entryUUID", &[b"1"])])]),
            entry(vec![
                prim(b"cn=c"),
                cons(vec![attr("entryUUID", &[&[b'x'; 5000]])]),
            ]),
            ldap3::ResultEntry::new(tag(5, ldap3::asn1::PL::C(vec![]))),
        ];
        for c in cases {
            assert!(parse_entry(c, &cfg()).is_none());
        }
    }
}
