//! `bramble device contacts|calendar|tasks|memos` and `bramble device options`: the phone's
//! organizer and options (`bramble_device::organizer` does the work: this module parses flags
//! and prints).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use bramble_device::organizer::{OrganizerEntry, RecordState};
use bramble_device::{Device, mail};
use bramble_organizer::{Database, Fields};

use crate::output;
use crate::tui::view::short;

/// How long a change waits for the server's answer.
const ANSWER_WAIT: Duration = Duration::from_secs(5);

/// What to do with an organizer database.
#[derive(Debug, clap::Subcommand)]
pub enum OrgCmd {
    /// List the records (the default).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one record, with its text.
    Show {
        /// Its UID (from `list`).
        uid: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a record.
    Add(FieldArgs),
    /// Add a record from a file (a vCard for contacts, an iCalendar object for the others).
    Import {
        /// The file.
        file: PathBuf,
    },
    /// Change the fields given of a record; the rest stays.
    Edit {
        /// Its UID.
        uid: String,
        #[command(flatten)]
        fields: FieldArgs,
    },
    /// Delete a record.
    Delete {
        /// Its UID.
        uid: String,
    },
    /// Tasks: mark a task done.
    Complete {
        /// Its UID.
        uid: String,
    },
    /// Tasks: mark a done task as not done.
    Reopen {
        /// Its UID.
        uid: String,
    },
}

/// The fields a phone user types.
#[derive(Debug, Default, clap::Args)]
pub struct FieldArgs {
    /// Contacts: the name.
    #[arg(long)]
    name: Option<String>,
    /// Contacts: an email address (repeat for more; replaces the ones there).
    #[arg(long)]
    email: Vec<String>,
    /// Contacts: a phone number (repeat for more; replaces the ones there).
    #[arg(long)]
    phone: Vec<String>,
    /// Contacts: the organization.
    #[arg(long)]
    org: Option<String>,
    /// Events, tasks, memos: the title.
    #[arg(long)]
    title: Option<String>,
    /// Events: the start, YYYY-MM-DD (a whole day) or "YYYY-MM-DD HH:MM" (UTC); memos:
    /// their date.
    #[arg(long)]
    start: Option<String>,
    /// Events: the end, as the start.
    #[arg(long)]
    end: Option<String>,
    /// Events: where.
    #[arg(long)]
    location: Option<String>,
    /// Events: a recurrence rule, e.g. FREQ=WEEKLY;BYDAY=MO.
    #[arg(long)]
    repeat: Option<String>,
    /// Tasks: when it is due, as the start.
    #[arg(long)]
    due: Option<String>,
    /// A note (an event's, task's or memo's description).
    #[arg(long)]
    note: Option<String>,
}

/// What to do with the options.
#[derive(Debug, clap::Subcommand)]
pub enum OptionsCmd {
    /// List the options (the default).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set an option.
    Set {
        /// Its name.
        key: String,
        /// Its value.
        value: String,
    },
    /// Remove an option.
    Unset {
        /// Its name.
        key: String,
    },
}

impl FieldArgs {
    /// The fields for `db`; a flag that does not apply to it is refused in words.
    fn fields(self, db: Database) -> Result<Fields> {
        let mut wrong: Vec<&str> = Vec::new();
        let contact = db == Database::Contacts;
        let mut check = |set: bool, flag: &'static str, ok: bool| {
            if set && !ok {
                wrong.push(flag);
            }
        };
        check(self.name.is_some(), "--name", contact);
        check(!self.email.is_empty(), "--email", contact);
        check(!self.phone.is_empty(), "--phone", contact);
        check(self.org.is_some(), "--org", contact);
        check(self.title.is_some(), "--title", !contact);
        check(
            self.start.is_some(),
            "--start",
            matches!(db, Database::Calendar | Database::Memos),
        );
        check(self.end.is_some(), "--end", db == Database::Calendar);
        check(
            self.location.is_some(),
            "--location",
            db == Database::Calendar,
        );
        check(self.repeat.is_some(), "--repeat", db == Database::Calendar);
        check(self.due.is_some(), "--due", db == Database::Tasks);
        if !wrong.is_empty() {
            anyhow::bail!(
                "{} {} not for {} (see `bramble device {} add --help`).",
                wrong.join(", "),
                if wrong.len() == 1 { "is" } else { "are" },
                db.as_str(),
                db.as_str()
            );
        }
        Ok(Fields {
            title: if contact { self.name } else { self.title },
            emails: (!self.email.is_empty()).then_some(self.email),
            phones: (!self.phone.is_empty()).then_some(self.phone),
            organization: self.org,
            start: self.start,
            end: self.end,
            due: self.due,
            location: self.location,
            recurrence: self.repeat,
            completed: None,
            note: self.note,
        })
    }
}

/// `bramble device <database> …`.
pub async fn run(device: &mut Device, db: Database, cmd: Option<OrgCmd>, json: bool) -> Result<()> {
    let store = device.organizer().await?;
    match cmd.unwrap_or(OrgCmd::List { json }) {
        OrgCmd::List { json: j } => {
            let entries = store.list(db).await?;
            if json || j {
                return output::json(&entries);
            }
            print_list(db, &entries);
        }
        OrgCmd::Show { uid, json: j } => {
            let e = store.get(db, &uid).await?;
            if json || j {
                return output::json(&e);
            }
            print_entry(&e);
        }
        OrgCmd::Add(fields) => {
            let fields = fields.fields(db)?;
            let uid = store.add(db, &fields).await?;
            let e = store.get(db, &uid).await?;
            println!("Added {} {uid}: {}", db.noun(), title(&e));
            send_change(device, &e).await?;
        }
        OrgCmd::Import { file } => {
            let data = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("Cannot read {}: {e}", file.display()))?;
            let uid = store.add_raw(db, &data).await?;
            let e = store.get(db, &uid).await?;
            println!("Added {} {uid}: {}", db.noun(), title(&e));
            send_change(device, &e).await?;
        }
        OrgCmd::Edit { uid, fields } => {
            let fields = fields.fields(db)?;
            if fields == Fields::default() {
                anyhow::bail!("Nothing to change: give the fields to change (see --help).");
            }
            let e = store.edit(db, &uid, &fields).await?;
            println!("Changed {} {uid}: {}", db.noun(), title(&e));
            send_change(device, &e).await?;
        }
        OrgCmd::Delete { uid } => {
            let e = store.get(db, &uid).await?;
            store.delete(db, &uid).await?;
            println!("Deleted {} {uid}: {}", db.noun(), title(&e));
            send_change(device, &e).await?;
        }
        OrgCmd::Complete { uid } | OrgCmd::Reopen { uid } if db != Database::Tasks => {
            anyhow::bail!(
                "Only tasks are completed or reopened, not {} ({uid}).",
                db.as_str()
            );
        }
        OrgCmd::Complete { uid } => {
            let fields = Fields {
                completed: Some(true),
                ..Fields::default()
            };
            let e = store.edit(db, &uid, &fields).await?;
            println!("Task {uid} done: {}", title(&e));
            send_change(device, &e).await?;
        }
        OrgCmd::Reopen { uid } => {
            let fields = Fields {
                completed: Some(false),
                ..Fields::default()
            };
            let e = store.edit(db, &uid, &fields).await?;
            println!("Task {uid} reopened: {}", title(&e));
            send_change(device, &e).await?;
        }
    }
    Ok(())
}

/// `bramble device options …`.
pub async fn options(device: &mut Device, cmd: Option<OptionsCmd>, json: bool) -> Result<()> {
    match cmd.unwrap_or(OptionsCmd::List { json }) {
        OptionsCmd::List { json: j } => {
            if json || j {
                return output::json(device.options());
            }
            if device.options().is_empty() {
                println!("No options are set.");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = device
                .options()
                .iter()
                .map(|(k, v)| vec![k.clone(), short(v, 60)])
                .collect();
            output::table(&["OPTION", "VALUE"], &rows);
            return Ok(());
        }
        OptionsCmd::Set { key, value } => {
            device.set_option(&key, &value)?;
            println!("{} is set to {value:?}.", key.trim());
        }
        OptionsCmd::Unset { key } => {
            if device.unset_option(&key)? {
                println!("{} is no longer set.", key.trim());
            } else {
                println!("{} was not set.", key.trim());
                return Ok(());
            }
        }
    }
    if device.backup_enabled() && device.server().is_some() {
        let later = "The backup of your options will be sent on the next connection.";
        match device.connect().await {
            Ok(mut conn) => {
                let sent = bramble_device::organizer::send_pending(&mut conn).await;
                conn.close().await;
                match sent {
                    Ok(_) => println!("Your options are backed up to your organization's server."),
                    Err(e) if e.is_transient() => println!("Not connected: {e}\n{later}"),
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) if e.is_transient() => println!("Not connected: {e}\n{later}"),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// After a change: send it at once when the relay answers and say what the server made of
/// it, or say that it waits for the next connection.
async fn send_change(device: &mut Device, e: &OrganizerEntry) -> Result<()> {
    if device.server().is_none() {
        println!("This device is not activated: the change stays on the device.");
        return Ok(());
    }
    if e.state == RecordState::Local {
        println!(
            "{} are synchronized from the server only: this change stays on the device.",
            e.database.title()
        );
        return Ok(());
    }
    let store = device.organizer().await?;
    let sending = store
        .sync_config()
        .await?
        .is_some_and(|c| c.sent().contains(&e.database));
    if !sending {
        println!(
            "{} are not synchronized with your organization's server now: the change stays on \
             the device and goes when they are.",
            e.database.title()
        );
        return Ok(());
    }
    let later = "The change is kept and will be sent on the next connection.";
    let mail_store = device.mail_store().await?;
    let waited = match device.connect().await {
        Ok(mut conn) => {
            let r = mail::wait_for_organizer(&mut conn, &mail_store, ANSWER_WAIT).await;
            conn.close().await;
            r
        }
        Err(e) => Err(e),
    };
    match waited {
        Ok(report) => {
            for ev in &report.managed {
                println!("{ev}");
            }
            for ev in &report.organizer {
                println!("{ev}");
            }
            if !report.ended {
                mail_store.close().await;
                if !store.pending_batches().await?.is_empty() {
                    println!(
                        "No answer from the enterprise server within {}. {later}",
                        humantime::format_duration(ANSWER_WAIT)
                    );
                }
            }
            Ok(())
        }
        Err(err) if err.is_transient() => {
            println!("Not connected: {err}\n{later}");
            Ok(())
        }
        Err(err) => Err(err.into()),
    }
}

/// A record's title as lists show it: "(untitled)" when it has none, a meeting invitation
/// marked "(invitation from X)".
pub(crate) fn title(e: &OrganizerEntry) -> String {
    let t = if e.summary.title.is_empty() {
        "(untitled)".to_owned()
    } else {
        e.summary.title.clone()
    };
    // A meeting someone invited the user to shows as one, as on a BlackBerry.
    match (&e.summary.organizer, e.summary.invitation) {
        (Some(o), true) => format!("{t} (invitation from {o})"),
        _ => t,
    }
}

/// Where a record stands, in a list's words ("" when synchronized).
pub(crate) fn state_text(e: &OrganizerEntry) -> String {
    match (&e.detail, e.state) {
        (Some(_), _) => "refused".into(),
        (None, RecordState::Synced) => String::new(),
        (None, RecordState::Local) => "on this device only".into(),
        (None, s) => format!("{s}, not sent"),
    }
}

/// When an event is, a task is due or a memo is dated ("" for contacts).
pub(crate) fn when(e: &OrganizerEntry) -> String {
    let s = &e.summary;
    match e.database {
        Database::Calendar => match (&s.start, &s.end) {
            (Some(a), Some(b)) => format!("{a} – {b}"),
            (Some(a), None) => a.clone(),
            _ => String::new(),
        },
        Database::Tasks => s.due.clone().unwrap_or_default(),
        Database::Memos => s.start.clone().unwrap_or_default(),
        Database::Contacts => String::new(),
    }
}

fn print_list(db: Database, entries: &[OrganizerEntry]) {
    if entries.is_empty() {
        println!("No {} on this device.", db.as_str());
        return;
    }
    let (header, rows): (Vec<&str>, Vec<Vec<String>>) = match db {
        Database::Contacts => (
            vec!["UID", "NAME", "EMAIL", "PHONE", "ORGANIZATION", "STATE"],
            entries
                .iter()
                .map(|e| {
                    vec![
                        e.uid.clone(),
                        short(&title(e), 30),
                        short(&e.summary.emails.join(", "), 30),
                        short(&e.summary.phones.join(", "), 20),
                        short(e.summary.organization.as_deref().unwrap_or(""), 20),
                        state_text(e),
                    ]
                })
                .collect(),
        ),
        Database::Tasks => (
            vec!["UID", "DONE", "TITLE", "DUE", "STATE"],
            entries
                .iter()
                .map(|e| {
                    vec![
                        e.uid.clone(),
                        if e.summary.completed { "yes" } else { "" }.into(),
                        short(&title(e), 40),
                        when(e),
                        state_text(e),
                    ]
                })
                .collect(),
        ),
        _ => (
            vec!["UID", "WHEN", "TITLE", "WHERE", "STATE"],
            entries
                .iter()
                .map(|e| {
                    vec![
                        e.uid.clone(),
                        when(e),
                        short(&title(e), 40),
                        short(e.summary.location.as_deref().unwrap_or(""), 20),
                        state_text(e),
                    ]
                })
                .collect(),
        ),
    };
    output::table(&header, &rows);
}

/// The fields `show` prints of a record, label and value, the empty ones left out.
pub(crate) fn entry_fields(e: &OrganizerEntry) -> Vec<(&'static str, String)> {
    let s = &e.summary;
    let mut out: Vec<(&'static str, String)> = Vec::new();
    let mut line = |label: &'static str, v: &str| {
        if !v.is_empty() {
            out.push((label, v.to_owned()));
        }
    };
    line("UID", &e.uid);
    line(
        if e.database == Database::Contacts {
            "Name"
        } else {
            "Title"
        },
        &title(e),
    );
    line("Email", &s.emails.join(", "));
    line("Phone", &s.phones.join(", "));
    line("Organization", s.organization.as_deref().unwrap_or(""));
    line("When", &when(e));
    line("Where", s.location.as_deref().unwrap_or(""));
    line("Repeats", s.recurrence.as_deref().unwrap_or(""));
    line("Organizer", s.organizer.as_deref().unwrap_or(""));
    line("Attendees", &s.attendees.join(", "));
    if e.database == Database::Tasks {
        line("Done", if s.completed { "yes" } else { "no" });
    }
    line("Note", s.note.as_deref().unwrap_or(""));
    line(
        "State",
        &match &e.detail {
            Some(d) => format!("refused by the server: {d}"),
            None => match e.state {
                RecordState::Synced => "synchronized".into(),
                _ => state_text(e),
            },
        },
    );
    line("Version", e.version.as_deref().unwrap_or(""));
    out
}

fn print_entry(e: &OrganizerEntry) {
    for (label, v) in entry_fields(e) {
        println!("{label:<14}{v}");
    }
    println!();
    print!("{}", e.data);
    if !e.data.ends_with('\n') {
        println!();
    }
}
