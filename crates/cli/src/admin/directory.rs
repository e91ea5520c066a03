//! `bramble admin directory …`: the company directory (LDAP) users are added from, as BES's
//! MailStore service did: search it, add people as users, bring names in step.

use anyhow::{Context, Result, bail};
use bramble_server::admin::directory_api::{DirectoryEntryView, DirectoryView, ImportReport};
use bramble_server::directory::SyncReport;
use reqwest::Method;

use super::{Body, Client, aligned, encode, print_text};
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub enum DirectoryCmd {
    /// The directory the server reads ([server.directory]) and its last synchronization.
    Show,
    /// Find people by part of their name or mail address.
    Search {
        /// What to look for; leave it out to list everyone (up to --limit).
        query: Option<String>,
        /// Entries at most.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Add people as users (BES status Initializing), by mail address or by the ID that
    /// `search` shows; a user who is there already with that address is linked to the entry.
    Import {
        /// Mail addresses (alice@example.com) or entry IDs.
        #[arg(required = true, value_name = "MAIL|ID")]
        who: Vec<String>,
    },
    /// Bring the names of users added from the directory in step now, and list addresses that
    /// changed and entries that are gone.
    Sync,
}

async fn search(
    client: &Client,
    query: &str,
    limit: u32,
) -> Result<(Vec<DirectoryEntryView>, bool)> {
    let path = format!("/directory/search?q={}&limit={limit}", encode(query));
    let resp = client.request(Method::GET, &path, Body::None).await?;
    let more = resp
        .headers()
        .get("x-more-results")
        .is_some_and(|v| v.as_bytes() == b"true");
    let bytes = resp.bytes().await.context("reading the server's answer")?;
    let entries = serde_json::from_slice(&bytes)
        .context("the server's answer is not what this client expects")?;
    Ok((entries, more))
}

fn render_report(r: &SyncReport) -> String {
    let mut out = format!(
        "Synchronized with the directory at {}: {} users compared.\n",
        r.at, r.checked
    );
    if let Some(e) = &r.error {
        out.push_str(&format!("It failed: {e}\n"));
        return out;
    }
    let name = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
    if r.renamed.is_empty() {
        out.push_str("No names changed.\n");
    } else {
        out.push_str("Names changed:\n");
        let rows: Vec<Vec<String>> = r
            .renamed
            .iter()
            .map(|c| vec![c.email.clone(), name(&c.from), "->".into(), name(&c.to)])
            .collect();
        out.push_str(&aligned("  ", &rows));
    }
    if !r.readdressed.is_empty() {
        out.push_str(
            "Addresses changed (the device, mail and settings moved with them; their phones \
             get their service books again):\n",
        );
        let rows: Vec<Vec<String>> = r
            .readdressed
            .iter()
            .map(|c| vec![name(&c.from), "->".into(), c.email.clone()])
            .collect();
        out.push_str(&aligned("  ", &rows));
    }
    if !r.address_changed.is_empty() {
        out.push_str(
            "The directory gives these users another mail address, not applied (change it \
             with bramble admin user edit EMAIL --email NEW):\n",
        );
        let rows: Vec<Vec<String>> = r
            .address_changed
            .iter()
            .map(|c| {
                vec![
                    c.email.clone(),
                    "->".into(),
                    name(&c.to),
                    c.reason
                        .as_deref()
                        .map(|x| format!("({x})"))
                        .unwrap_or_default(),
                ]
            })
            .collect();
        out.push_str(&aligned("  ", &rows));
    }
    if !r.missing.is_empty() {
        out.push_str(
            "No longer in the directory (kept; remove them with bramble admin user delete if \
             they left):\n",
        );
        for m in &r.missing {
            out.push_str(&format!("  {m}\n"));
        }
    }
    out
}

pub(super) async fn run(client: &Client, json: bool, command: DirectoryCmd) -> Result<()> {
    match command {
        DirectoryCmd::Show => {
            let d: DirectoryView = client.get("/directory").await?;
            if json {
                return output::json(&d);
            }
            if !d.configured {
                println!(
                    "No directory is configured. Add a [server.directory] section (url, \
                     base_dn, bind_dn, bind_password_file) to the server's configuration and \
                     restart it."
                );
                return Ok(());
            }
            let v = |o: &Option<String>| o.clone().unwrap_or_default();
            let rows = vec![
                vec!["Directory".to_owned(), v(&d.url)],
                vec!["Base DN".to_owned(), v(&d.base_dn)],
                vec!["Filter".to_owned(), v(&d.filter)],
                vec!["Synchronized every".to_owned(), v(&d.sync_interval)],
            ];
            let mut out = aligned("", &rows);
            match &d.last_sync {
                Some(r) => out.push_str(&render_report(r)),
                None => out.push_str("Not synchronized since the server started.\n"),
            }
            print_text(&out)?;
        }
        DirectoryCmd::Search { query, limit } => {
            let (entries, more) = search(client, query.as_deref().unwrap_or(""), limit).await?;
            if json {
                return output::json(&serde_json::json!({ "entries": entries, "more": more }));
            }
            if entries.is_empty() {
                println!("Nobody in the directory matches.");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = entries
                .iter()
                .map(|e| {
                    vec![
                        e.entry.name.clone().unwrap_or_else(|| "-".into()),
                        e.entry.mail.clone().unwrap_or_else(|| "(no mail)".into()),
                        e.user
                            .as_ref()
                            .map_or_else(|| "-".into(), |u| format!("yes ({u})")),
                        e.entry.id.clone(),
                    ]
                })
                .collect();
            output::table(&["NAME", "MAIL", "USER", "ID"], &rows);
            if more {
                println!("More people match; narrow the search or raise --limit.");
            }
        }
        DirectoryCmd::Import { who } => {
            let mut ids = Vec::new();
            for w in &who {
                if !w.contains('@') {
                    ids.push(w.clone());
                    continue;
                }
                let (entries, _) = search(client, w, 20).await?;
                let want = w.trim().to_lowercase();
                match entries
                    .into_iter()
                    .find(|e| e.entry.mail.as_deref() == Some(want.as_str()))
                {
                    Some(e) => ids.push(e.entry.id),
                    None => bail!(
                        "nobody in the directory has the mail address {w}; find them with: \
                         bramble admin directory search NAME"
                    ),
                }
            }
            let report: ImportReport = client
                .with_body(
                    Method::POST,
                    "/directory/import",
                    &serde_json::json!({ "ids": ids }),
                )
                .await?;
            if json {
                return output::json(&report);
            }
            let mut out = String::new();
            for u in &report.added {
                out.push_str(&format!(
                    "Added {}{} (status {}).\n",
                    u.email,
                    u.display_name
                        .as_ref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default(),
                    u.status
                ));
            }
            for l in &report.linked {
                out.push_str(&format!(
                    "Linked {l}, a user already, to their directory entry.\n"
                ));
            }
            for s in &report.skipped {
                out.push_str(&format!("Left out {}: {}.\n", s.id, s.reason));
            }
            if let Some(u) = report.added.first() {
                out.push_str(&format!(
                    "Next: bramble admin user activation-password {} --generate (for the phone user)\n",
                    u.email
                ));
            }
            print_text(&out)?;
        }
        DirectoryCmd::Sync => {
            let report: SyncReport = client
                .call(Method::POST, "/directory/sync", None)
                .await?
                .context("empty answer")?;
            if json {
                return output::json(&report);
            }
            print_text(&render_report(&report))?;
        }
    }
    Ok(())
}
