//! `bramble admin sync …`: how each organizer database (calendar, contacts, tasks, memos) is
//! synchronized for a user or a group, the records that could not be, and the user's
//! wireless backup.

use anyhow::Result;
use reqwest::Method;
use serde_json::{Value, json};

use super::{Client, aligned, encode, print_text};
use crate::output;

#[derive(Debug, clap::Subcommand)]
pub enum SyncCmd {
    /// Show a user's synchronization: each database on or off, its direction and conflict
    /// rule and where that came from (the user, a group, the server's default), the records
    /// on each side, problems, the newest wireless backup.
    Show {
        /// The user's email address.
        email: String,
        /// Show this many problems (default 20).
        #[arg(long, value_name = "N")]
        problems: Option<u32>,
    },
    /// Set how a database is synchronized for a user or a group (what is not given stays).
    Set {
        /// calendar, contacts, tasks or memos.
        database: String,
        /// For this user.
        #[arg(
            long,
            value_name = "EMAIL",
            conflicts_with = "group",
            required_unless_present = "group"
        )]
        user: Option<String>,
        /// For this group's members (a user's own setting wins).
        #[arg(long, value_name = "NAME")]
        group: Option<String>,
        /// Synchronize it.
        #[arg(long, conflicts_with = "off")]
        on: bool,
        /// Do not synchronize it.
        #[arg(long)]
        off: bool,
        /// bidirectional, or server-to-device (changes made on the device stay there).
        #[arg(long, value_name = "DIRECTION")]
        direction: Option<String>,
        /// Who wins when a record changed on both sides: server-wins, device-wins or
        /// newest-wins.
        #[arg(long, value_name = "RULE")]
        conflict: Option<String>,
    },
    /// Remove a user's or a group's setting (for one database, or all), so the group's or
    /// the server's default applies again.
    Clear {
        /// calendar, contacts, tasks or memos (default: all).
        database: Option<String>,
        /// For this user.
        #[arg(
            long,
            value_name = "EMAIL",
            conflicts_with = "group",
            required_unless_present = "group"
        )]
        user: Option<String>,
        /// For this group.
        #[arg(long, value_name = "NAME")]
        group: Option<String>,
    },
}

fn text(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `sync show`.
pub(super) fn render_user(v: &Value) -> String {
    let mut rows = vec![vec!["User".to_owned(), text(v, "email")]];
    if v["configured"] != true {
        rows.push(vec![
            "Synchronization".into(),
            "off: [server.sync] url is not set on this server".into(),
        ]);
        return aligned("", &rows);
    }
    rows.push(vec![
        "Wireless backup".into(),
        if v["backup"] == true { "on" } else { "off" }.into(),
    ]);
    let mut out = aligned("", &rows);
    let mut table = vec![vec![
        "DATABASE".to_owned(),
        "SYNC".into(),
        "DIRECTION".into(),
        "CONFLICTS".into(),
        "FROM".into(),
        "ON SERVER".into(),
        "ON DEVICE".into(),
    ]];
    let empty = Vec::new();
    let records = v["records"].as_array().unwrap_or(&empty);
    for d in v["databases"].as_array().unwrap_or(&empty) {
        let name = text(d, "database");
        let count = records.iter().find(|r| r["database"] == d["database"]);
        table.push(vec![
            name,
            if d["enabled"] == true { "on" } else { "off" }.into(),
            text(d, "direction"),
            text(d, "conflict"),
            text(d, "source"),
            count.map(|c| text(c, "on_server")).unwrap_or_default(),
            count.map(|c| text(c, "on_device")).unwrap_or_default(),
        ]);
    }
    out.push('\n');
    out.push_str(&aligned("", &table));
    match v["last_backup"].as_object() {
        Some(b) => out.push_str(&format!(
            "\nLast backup  {} from PIN {} ({} bytes, encrypted)\n",
            b.get("taken_at")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            b.get("pin").and_then(Value::as_str).unwrap_or_default(),
            b.get("bytes").map(Value::to_string).unwrap_or_default()
        )),
        None => out.push_str("\nLast backup  none yet\n"),
    }
    let problems = v["problems"].as_array().unwrap_or(&empty);
    if problems.is_empty() {
        out.push_str("Problems     none\n");
    } else {
        out.push_str("Problems (newest first)\n");
        for p in problems {
            out.push_str(&format!(
                "  {}  {} ({}, {}): {}\n",
                text(p, "at"),
                text(p, "item"),
                text(p, "database"),
                if p["side"] == "server" {
                    "on the CalDAV/CardDAV server"
                } else {
                    "from the device"
                },
                text(p, "detail")
            ));
        }
    }
    out
}

fn path(user: &Option<String>, group: &Option<String>) -> String {
    match (user, group) {
        (Some(u), _) => format!("/users/{}/sync", encode(u)),
        (None, Some(g)) => format!("/groups/{}/sync", encode(g)),
        (None, None) => "/users/-/sync".into(),
    }
}

pub(super) async fn run(client: &Client, json: bool, command: SyncCmd) -> Result<()> {
    match command {
        SyncCmd::Show { email, problems } => {
            let mut p = format!("/users/{}/sync", encode(&email));
            if let Some(n) = problems {
                p.push_str(&format!("?problems={n}"));
            }
            let v: Value = client.get(&p).await?;
            if json {
                return output::json(&v);
            }
            print_text(&render_user(&v))?;
        }
        SyncCmd::Set {
            database,
            user,
            group,
            on,
            off,
            direction,
            conflict,
        } => {
            let mut body = json!({});
            if on || off {
                body["enabled"] = json!(on);
            }
            if let Some(d) = &direction {
                body["direction"] = json!(d);
            }
            if let Some(c) = &conflict {
                body["conflict"] = json!(c);
            }
            let v: Value = client
                .with_body(
                    Method::PUT,
                    &format!("{}/{}", path(&user, &group), encode(&database)),
                    &body,
                )
                .await?;
            if json {
                return output::json(&v);
            }
            match (&user, &group) {
                (Some(u), _) => {
                    println!(
                        "Changed how {database} is synchronized for {u}; their device gets the new configuration."
                    );
                    print_text(&render_user(&v))?;
                }
                (None, Some(g)) => {
                    println!(
                        "Changed how {database} is synchronized for group {g}; its members' devices get the new configuration (a user's own setting wins)."
                    );
                }
                (None, None) => {}
            }
        }
        SyncCmd::Clear {
            database,
            user,
            group,
        } => {
            let mut p = path(&user, &group);
            if let Some(d) = &database {
                p.push_str(&format!("/{}", encode(d)));
            }
            client.no_answer::<()>(Method::DELETE, &p, None).await?;
            let who = user
                .as_deref()
                .map(str::to_owned)
                .or(group.map(|g| format!("group {g}")))
                .unwrap_or_default();
            let what = database.unwrap_or_else(|| "every database".into());
            if json {
                return output::json(&json!({ "cleared": what, "for": who }));
            }
            println!(
                "Cleared the setting of {what} for {who}; the group's or the server's default applies."
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_synchronization_reads_as_a_table() {
        let v = json!({
            "email": "alice@example.com",
            "configured": true,
            "backup": true,
            "databases": [
                {"database": "calendar", "enabled": true, "direction": "bidirectional", "conflict": "server-wins", "source": "server default"},
                {"database": "contacts", "enabled": false, "direction": "server-to-device", "conflict": "newest-wins", "source": "group Sales"}
            ],
            "records": [{"database": "calendar", "on_server": 500, "on_device": 498}],
            "problems": [{"database": "contacts", "item": "/a/x.vcf", "side": "server", "detail": "it has no UID", "at": "2026-12-02T10:00:00Z"}],
            "last_backup": null
        });
        let out = render_user(&v);
        assert!(
            out.contains("calendar  on    bidirectional     server-wins  server default  500"),
            "{out}"
        );
        assert!(out.contains("group Sales"), "{out}");
        assert!(
            out.contains("/a/x.vcf (contacts, on the CalDAV/CardDAV server): it has no UID"),
            "{out}"
        );
        assert!(out.contains("Last backup  none yet"), "{out}");
        let off = render_user(&json!({"email": "a@b", "configured": false}));
        assert!(off.contains("[server.sync] url is not set"), "{off}");
    }
}
