//! Building and editing records from what a phone user typed. An edit changes only the
//! properties given and keeps everything else in the record as it was (alarms, attendees'
//! answers, a photo, properties this crate has never heard of).
//!
//! Each new property is written as one escaped content line and read back by calcard, so
//! what is stored is always what calcard itself would write.

use calcard::icalendar::{ICalendarComponent, ICalendarEntry, ICalendarProperty};
use calcard::vcard::{VCardEntry, VCardProperty};

use crate::Database;
use crate::record::{
    MAX_RECORD, RecordError, check_uid, component_type, main_component, parse, parse_icalendar,
    parse_vcard,
};

/// The most a typed field may hold, in bytes.
const MAX_FIELD: usize = 16 * 1024;

/// What a phone user set. `None` leaves a field as it is; `Some("")` (or an empty list)
/// removes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    /// A contact's name; an event's, task's or memo's summary.
    pub title: Option<String>,
    /// Contacts: email addresses.
    pub emails: Option<Vec<String>>,
    /// Contacts: phone numbers.
    pub phones: Option<Vec<String>>,
    /// Contacts: the organization.
    pub organization: Option<String>,
    /// Events: the start, `YYYY-MM-DD` (a whole day) or `YYYY-MM-DD HH:MM` (UTC); memos: their
    /// date.
    pub start: Option<String>,
    /// Events: the end, as the start.
    pub end: Option<String>,
    /// Tasks: when it is due, as the start.
    pub due: Option<String>,
    /// Events: where.
    pub location: Option<String>,
    /// Events: a recurrence rule (`FREQ=WEEKLY;BYDAY=MO`).
    pub recurrence: Option<String>,
    /// Tasks: done or not.
    pub completed: Option<bool>,
    /// A contact's note; an event's, task's or memo's description.
    pub note: Option<String>,
}

/// A fresh UID: 128 random bits, as a phone would make one.
pub fn new_uid() -> String {
    let bits: u128 = rand::random();
    format!("{bits:032x}@bramble")
}

/// A new record of `database` with `uid` (a fresh one when `None`), changed at `now_ms`;
/// returns its UID and its text.
///
/// # Errors
/// [`RecordError::BadField`] for a field that cannot be written (a date that is not one, a
/// recurrence rule that does not parse, a field too long), [`RecordError::BadUid`].
pub fn new_record(
    database: Database,
    uid: Option<&str>,
    fields: &Fields,
    now_ms: i64,
) -> Result<(String, String), RecordError> {
    let uid = match uid {
        Some(u) => check_uid(u.trim())?,
        None => new_uid(),
    };
    if uid.is_empty() {
        return Err(RecordError::NoUid);
    }
    let uid_line = format!("UID:{}", escape(&uid));
    let skeleton = match database {
        Database::Contacts => {
            format!("BEGIN:VCARD\r\nVERSION:4.0\r\n{uid_line}\r\nFN:\r\nEND:VCARD\r\n")
        }
        _ => {
            let c = database.component().unwrap_or("VEVENT");
            let stamp = utc_stamp(now_ms);
            format!(
                "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Bramble//Device//EN\r\nBEGIN:{c}\r\n\
                 {uid_line}\r\nDTSTAMP:{stamp}\r\nCREATED:{stamp}\r\nEND:{c}\r\nEND:VCALENDAR\r\n"
            )
        }
    };
    let mut fields = fields.clone();
    if database == Database::Memos && fields.start.is_none() {
        fields.start = Some(date_of_ms(now_ms));
    }
    let data = edit_record(database, &skeleton, &fields, now_ms)?;
    Ok((uid, data))
}

/// `data` with `fields` changed, and its change time (REV, LAST-MODIFIED and DTSTAMP) set to
/// `now_ms`.
///
/// # Errors
/// The record does not parse, or a field cannot be written ([`RecordError::BadField`]).
pub fn edit_record(
    database: Database,
    data: &str,
    fields: &Fields,
    now_ms: i64,
) -> Result<String, RecordError> {
    parse(database, data)?;
    let out = match database {
        Database::Contacts => edit_contact(data, fields, now_ms)?,
        _ => edit_component(database, data, fields, now_ms)?,
    };
    if out.len() > MAX_RECORD {
        return Err(RecordError::TooLarge {
            size: out.len(),
            max: MAX_RECORD,
        });
    }
    // What was written must read back (it always should; this keeps a writer bug from
    // reaching a server).
    parse(database, &out)?;
    Ok(out)
}

fn edit_contact(data: &str, f: &Fields, now_ms: i64) -> Result<String, RecordError> {
    let mut card = parse_vcard(data)?;
    let mut set: Vec<(VCardProperty, Vec<String>)> = Vec::new();
    if let Some(name) = &f.title {
        let name = field("name", name)?;
        set.push((VCardProperty::Fn, line("FN", &name)));
        // N: family name last, the rest given names (what a phone's "name" field means).
        let (given, family) = match name.rsplit_once(' ') {
            Some((g, fam)) => (g.trim().to_owned(), fam.to_owned()),
            None => (String::new(), name.clone()),
        };
        set.push((
            VCardProperty::N,
            if name.is_empty() {
                vec![]
            } else {
                vec![format!("N:{};{};;;", escape(&family), escape(&given))]
            },
        ));
    }
    if let Some(list) = &f.emails {
        set.push((VCardProperty::Email, lines("EMAIL", "email address", list)?));
    }
    if let Some(list) = &f.phones {
        set.push((VCardProperty::Tel, lines("TEL", "phone number", list)?));
    }
    if let Some(o) = &f.organization {
        set.push((VCardProperty::Org, line("ORG", &field("organization", o)?)));
    }
    if let Some(n) = &f.note {
        set.push((VCardProperty::Note, line("NOTE", &field("note", n)?)));
    }
    set.push((
        VCardProperty::Rev,
        vec![format!("REV:{}", utc_stamp(now_ms))],
    ));
    for (prop, new_lines) in set {
        let entries = vcard_entries(&new_lines)?;
        replace_vcard(&mut card.entries, &prop, entries);
    }
    Ok(card.to_string())
}

fn edit_component(
    database: Database,
    data: &str,
    f: &Fields,
    now_ms: i64,
) -> Result<String, RecordError> {
    let mut cal = parse_icalendar(data)?;
    // The main component's position (the one `parse` summarises).
    let index = {
        let (_, main) = main_component(database, &cal)?;
        let main: *const ICalendarComponent = main;
        cal.components
            .iter()
            .position(|c| std::ptr::eq(c, main))
            .ok_or(RecordError::WrongComponent {
                want: database.component().unwrap_or("VEVENT"),
                database,
            })?
    };
    let mut set: Vec<(ICalendarProperty, Vec<String>)> = Vec::new();
    if let Some(t) = &f.title {
        set.push((
            ICalendarProperty::Summary,
            line("SUMMARY", &field("summary", t)?),
        ));
    }
    if let Some(s) = &f.start {
        set.push((
            ICalendarProperty::Dtstart,
            date_line("DTSTART", "start", s)?,
        ));
    }
    if let Some(s) = &f.end {
        set.push((ICalendarProperty::Dtend, date_line("DTEND", "end", s)?));
    }
    if let Some(s) = &f.due {
        set.push((ICalendarProperty::Due, date_line("DUE", "due date", s)?));
    }
    if let Some(l) = &f.location {
        set.push((
            ICalendarProperty::Location,
            line("LOCATION", &field("location", l)?),
        ));
    }
    if let Some(r) = &f.recurrence {
        set.push((ICalendarProperty::Rrule, rrule_line(r)?));
    }
    if let Some(n) = &f.note {
        set.push((
            ICalendarProperty::Description,
            line("DESCRIPTION", &field("description", n)?),
        ));
    }
    if let Some(done) = f.completed {
        if done {
            set.push((ICalendarProperty::Status, vec!["STATUS:COMPLETED".into()]));
            set.push((
                ICalendarProperty::Completed,
                vec![format!("COMPLETED:{}", utc_stamp(now_ms))],
            ));
        } else {
            set.push((
                ICalendarProperty::Status,
                vec!["STATUS:NEEDS-ACTION".into()],
            ));
            set.push((ICalendarProperty::Completed, vec![]));
        }
    }
    let stamp = utc_stamp(now_ms);
    set.push((
        ICalendarProperty::LastModified,
        vec![format!("LAST-MODIFIED:{stamp}")],
    ));
    set.push((ICalendarProperty::Dtstamp, vec![format!("DTSTAMP:{stamp}")]));
    let kind = component_type(database);
    for (prop, new_lines) in set {
        let entries = ical_entries(database, &new_lines)?;
        if let Some(c) = cal.components.get_mut(index) {
            debug_assert_eq!(c.component_type, kind);
            c.entries.retain(|e| e.name != prop);
            c.entries.extend(entries);
        }
    }
    Ok(cal.to_string())
}

/// Replaces every `prop` entry by `entries`, where the first of them stood (or at the end).
fn replace_vcard(all: &mut Vec<VCardEntry>, prop: &VCardProperty, entries: Vec<VCardEntry>) {
    let at = all.iter().position(|e| &e.name == prop);
    all.retain(|e| &e.name != prop);
    // Before END (calcard keeps BEGIN/END out of the entries, but be safe).
    let at = at.unwrap_or(all.len()).min(all.len());
    for (i, e) in entries.into_iter().enumerate() {
        all.insert(at + i, e);
    }
}

/// Content lines read back as vCard entries.
fn vcard_entries(lines: &[String]) -> Result<Vec<VCardEntry>, RecordError> {
    if lines.is_empty() {
        return Ok(vec![]);
    }
    let text = format!(
        "BEGIN:VCARD\r\nVERSION:4.0\r\n{}\r\nEND:VCARD\r\n",
        lines.join("\r\n")
    );
    let card = parse_vcard(&text).map_err(|e| RecordError::BadField(e.to_string()))?;
    Ok(card
        .entries
        .into_iter()
        .filter(|e| !matches!(e.name, VCardProperty::Version))
        .collect())
}

/// Content lines read back as entries of `database`'s component.
fn ical_entries(database: Database, lines: &[String]) -> Result<Vec<ICalendarEntry>, RecordError> {
    if lines.is_empty() {
        return Ok(vec![]);
    }
    let c = database.component().unwrap_or("VEVENT");
    let text = format!(
        "BEGIN:VCALENDAR\r\nBEGIN:{c}\r\n{}\r\nEND:{c}\r\nEND:VCALENDAR\r\n",
        lines.join("\r\n")
    );
    let cal = parse_icalendar(&text).map_err(|e| RecordError::BadField(e.to_string()))?;
    let kind = component_type(database);
    Ok(cal
        .components
        .into_iter()
        .find(|c| c.component_type == kind)
        .map(|c| c.entries)
        .unwrap_or_default())
}

/// A typed field: trimmed, bounded, without control characters other than newlines.
fn field(what: &str, s: &str) -> Result<String, RecordError> {
    let s = s.trim();
    if s.len() > MAX_FIELD {
        return Err(RecordError::BadField(format!(
            "the {what} is longer than {} KiB",
            MAX_FIELD / 1024
        )));
    }
    Ok(s.chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .collect())
}

/// `NAME:escaped value`, or nothing for an empty value (which removes the property).
fn line(name: &str, value: &str) -> Vec<String> {
    if value.is_empty() {
        vec![]
    } else {
        vec![format!("{name}:{}", escape(value))]
    }
}

fn lines(name: &str, what: &str, values: &[String]) -> Result<Vec<String>, RecordError> {
    let mut out = Vec::new();
    for v in values {
        out.extend(line(name, &field(what, v)?));
    }
    Ok(out)
}

/// TEXT escaping (RFC 5545 3.3.11, RFC 6350 3.4).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// `DTSTART;VALUE=DATE:20261224` or `DTSTART:20261224T100000Z` from what was typed.
fn date_line(name: &str, what: &str, typed: &str) -> Result<Vec<String>, RecordError> {
    let t = typed.trim();
    if t.is_empty() {
        return Ok(vec![]);
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(vec![format!("{name};VALUE=DATE:{}", d.format("%Y%m%d"))]);
    }
    let t = t.trim_end_matches(" UTC").trim_end_matches('Z');
    for fmt in [
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
    ] {
        if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(t, fmt) {
            return Ok(vec![format!("{name}:{}", dt.format("%Y%m%dT%H%M%SZ"))]);
        }
    }
    Err(RecordError::BadField(format!(
        "the {what} {typed:?} is not a date (YYYY-MM-DD) or a time (YYYY-MM-DD HH:MM, UTC)"
    )))
}

fn rrule_line(typed: &str) -> Result<Vec<String>, RecordError> {
    let t = typed.trim().trim_start_matches("RRULE:");
    if t.is_empty() {
        return Ok(vec![]);
    }
    let upper = t.to_ascii_uppercase();
    let fits = upper.len() <= 512
        && upper.starts_with("FREQ=")
        && upper
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "=;,:+-".contains(c));
    if !fits {
        return Err(RecordError::BadField(format!(
            "the recurrence {typed:?} is not a rule like FREQ=WEEKLY;BYDAY=MO"
        )));
    }
    Ok(vec![format!("RRULE:{upper}")])
}

fn utc_stamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y%m%dT%H%M%SZ")
        .to_string()
}

fn date_of_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_119_200_000; // 2026-12-01 10:00 UTC

    fn set(f: impl FnOnce(&mut Fields)) -> Fields {
        let mut fields = Fields::default();
        f(&mut fields);
        fields
    }

    #[test]
    fn a_new_contact_reads_back_with_its_fields() {
        let fields = set(|f| {
            f.title = Some("Dana Q. Public".into());
            f.emails = Some(vec!["dana@example.com".into(), "d@home.example".into()]);
            f.phones = Some(vec!["+1 555 0101".into()]);
            f.organization = Some("Acme; West".into());
            f.note = Some("met at the fair,\nsays hi".into());
        });
        let (uid, data) = new_record(Database::Contacts, None, &fields, NOW).expect("built");
        let r = parse(Database::Contacts, &data).expect("reads back");
        assert_eq!(r.uid, uid);
        assert_eq!(r.summary.title, "Dana Q. Public");
        assert_eq!(r.summary.emails, ["dana@example.com", "d@home.example"]);
        assert_eq!(r.summary.phones, ["+1 555 0101"]);
        assert_eq!(r.summary.organization.as_deref(), Some("Acme; West"));
        assert_eq!(r.summary.note.as_deref(), Some("met at the fair,\nsays hi"));
        assert_eq!(r.summary.modified_ms, Some(NOW));
    }

    #[test]
    fn an_edit_changes_only_what_was_given() {
        let base = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:e-9\r\nDTSTAMP:20261101T000000Z\r\nDTSTART:20261224T100000Z\r\nSUMMARY:Old\r\nX-KEEP-ME:yes\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT15M\r\nDESCRIPTION:soon\r\nEND:VALARM\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let fields = set(|f| {
            f.title = Some("New".into());
            f.location = Some("Room 1".into());
            f.recurrence = Some("freq=daily;count=3".into());
        });
        let out = edit_record(Database::Calendar, base, &fields, NOW).expect("edited");
        let r = parse(Database::Calendar, &out).expect("reads back");
        assert_eq!(r.uid, "e-9");
        assert_eq!(r.summary.title, "New");
        assert_eq!(r.summary.location.as_deref(), Some("Room 1"));
        assert_eq!(r.summary.start.as_deref(), Some("2026-12-24 10:00 UTC"));
        assert!(out.contains("X-KEEP-ME"), "{out}");
        assert!(out.contains("BEGIN:VALARM"), "{out}");
        assert!(out.contains("FREQ=DAILY"), "{out}");
        assert_eq!(r.summary.modified_ms, Some(NOW));
    }

    #[test]
    fn tasks_complete_and_memos_get_a_date() {
        let (_, task) = new_record(
            Database::Tasks,
            Some("t-1"),
            &set(|f| {
                f.title = Some("File report".into());
                f.due = Some("2026-12-05".into());
            }),
            NOW,
        )
        .expect("a task");
        let r = parse(Database::Tasks, &task).expect("reads back");
        assert!(!r.summary.completed);
        assert_eq!(r.summary.due.as_deref(), Some("2026-12-05"));
        let done = edit_record(
            Database::Tasks,
            &task,
            &set(|f| f.completed = Some(true)),
            NOW,
        )
        .expect("done");
        assert!(
            parse(Database::Tasks, &done)
                .expect("reads")
                .summary
                .completed
        );
        let (_, memo) = new_record(
            Database::Memos,
            None,
            &set(|f| f.title = Some("Ideas".into())),
            NOW,
        )
        .expect("a memo");
        let r = parse(Database::Memos, &memo).expect("reads back");
        assert_eq!(r.summary.start.as_deref(), Some("2026-12-01"));
    }

    #[test]
    fn what_cannot_be_written_is_refused_in_words() {
        let bad_date = set(|f| f.start = Some("next tuesday".into()));
        let e = new_record(Database::Calendar, None, &bad_date, NOW).expect_err("refused");
        assert!(e.to_string().contains("next tuesday"), "{e}");
        let bad_rule = set(|f| f.recurrence = Some("FREQ=DAILY\r\nATTENDEE:x".into()));
        assert!(new_record(Database::Calendar, None, &bad_rule, NOW).is_err());
        let long = set(|f| f.title = Some("x".repeat(MAX_FIELD + 1)));
        assert!(new_record(Database::Contacts, None, &long, NOW).is_err());
        assert!(new_record(Database::Contacts, Some("a\u{0}b"), &Fields::default(), NOW).is_err());
        // A line break typed into a name stays text, never a new property.
        let sneaky = set(|f| f.title = Some("Eve\r\nEMAIL:eve@evil.example".into()));
        let (_, data) = new_record(Database::Contacts, None, &sneaky, NOW).expect("built");
        let r = parse(Database::Contacts, &data).expect("reads back");
        assert!(r.summary.emails.is_empty(), "{data}");
    }
}
