//! Reading one record from untrusted text: a CalDAV/CardDAV server's resource or what a phone
//! sent. Bounded in size, never panicking, and every refusal a sentence.

use calcard::icalendar::{
    ICalendar, ICalendarComponent, ICalendarComponentType, ICalendarEntry, ICalendarProperty,
    ICalendarValue,
};
use calcard::vcard::{VCard, VCardEntry, VCardProperty, VCardValue};
use calcard::{Entry, Parser};

use crate::Database;

/// The largest record taken, in bytes (a contact with a photo fits; an event with a large
/// attachment does not).
pub const MAX_RECORD: usize = 256 * 1024;

/// How many components one iCalendar object may hold (a recurring event with its
/// overrides, its time zones and their rules).
const MAX_COMPONENTS: usize = 1_000;

/// A record that parsed: its database, UID, and what a phone shows of it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Record {
    /// Its database.
    pub database: Database,
    /// Its UID: the same on the device and on the CalDAV/CardDAV server.
    pub uid: String,
    /// What a phone shows.
    pub summary: Summary,
}

/// The fields a phone lists and shows. Everything else in the record is kept as it came.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    /// The contact's name, or the event's, task's or memo's summary ("" when it has none).
    pub title: String,
    /// Contacts: email addresses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<String>,
    /// Contacts: phone numbers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phones: Vec<String>,
    /// Contacts: the organization.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// Events: when it starts ("2026-12-24 10:00 UTC", or a date for a whole day); memos:
    /// their date.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Events: when it ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Tasks: when it is due.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due: Option<String>,
    /// The start (events, memos) or due time (tasks), unix ms, for sorting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when_ms: Option<i64>,
    /// A whole-day event.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub all_day: bool,
    /// Events: where.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Events: the recurrence rule, as written (`FREQ=WEEKLY;BYDAY=MO`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recurrence: Option<String>,
    /// Events: the organizer of a meeting (its address, without `mailto:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organizer: Option<String>,
    /// Events: the invited attendees' addresses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attendees: Vec<String>,
    /// Events: a meeting invitation (it has an organizer and attendees).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub invitation: bool,
    /// Tasks: done.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub completed: bool,
    /// Contacts' note, or the event's, task's or memo's description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// When it was last changed (REV, LAST-MODIFIED, or DTSTAMP), unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modified_ms: Option<i64>,
}

/// Why a record was not taken, in words for the administrator's report and the phone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Larger than [`MAX_RECORD`].
    #[error("it is {size} bytes, more than the {max} a record may have")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Nothing in it.
    #[error("it is empty")]
    Empty,
    /// A contact that is not a vCard.
    #[error("it is not a vCard ({0})")]
    NotVcard(String),
    /// An event, task or memo that is not an iCalendar object.
    #[error("it is not an iCalendar object ({0})")]
    NotICalendar(String),
    /// An iCalendar object without the component its database holds.
    #[error("it holds no {want} (an iCalendar object in {database} must hold one)")]
    WrongComponent {
        /// The component wanted.
        want: &'static str,
        /// The database.
        database: Database,
    },
    /// Several records in one.
    #[error("it holds more than one record ({0})")]
    Several(String),
    /// No UID.
    #[error("it has no UID")]
    NoUid,
    /// A UID no one could use as a name.
    #[error("its UID is not usable ({0})")]
    BadUid(String),
    /// What a user typed cannot go into a record.
    #[error("{0}")]
    BadField(String),
}

/// Parses one record of `database` from `data`.
///
/// # Errors
/// [`RecordError`] saying what is wrong.
pub fn parse(database: Database, data: &str) -> Result<Record, RecordError> {
    if data.len() > MAX_RECORD {
        return Err(RecordError::TooLarge {
            size: data.len(),
            max: MAX_RECORD,
        });
    }
    if data.trim().is_empty() {
        return Err(RecordError::Empty);
    }
    match database {
        Database::Contacts => {
            let card = parse_vcard(data)?;
            let uid = card
                .uid()
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .ok_or(RecordError::NoUid)?;
            let uid = check_uid(uid)?;
            Ok(Record {
                database,
                uid,
                summary: contact_summary(&card),
            })
        }
        _ => {
            let cal = parse_icalendar(data)?;
            let (uid, main) = main_component(database, &cal)?;
            Ok(Record {
                database,
                uid,
                summary: component_summary(database, main),
            })
        }
    }
}

/// A UID fit to name a record on both sides: printable, at most 255 bytes.
pub(crate) fn check_uid(uid: &str) -> Result<String, RecordError> {
    if uid.len() > 255 {
        return Err(RecordError::BadUid("longer than 255 bytes".into()));
    }
    if uid.chars().any(char::is_control) {
        return Err(RecordError::BadUid("it holds control characters".into()));
    }
    Ok(uid.to_owned())
}

pub(crate) fn parse_vcard(data: &str) -> Result<VCard, RecordError> {
    let mut parser = Parser::new(data);
    let card = match parser.entry() {
        Entry::VCard(card) => card,
        Entry::ICalendar(_) => {
            return Err(RecordError::NotVcard("it is an iCalendar object".into()));
        }
        other => return Err(RecordError::NotVcard(describe(other))),
    };
    match parser.entry() {
        Entry::Eof => Ok(card),
        Entry::VCard(_) | Entry::ICalendar(_) => {
            Err(RecordError::Several("a second vCard follows".into()))
        }
        other => Err(RecordError::NotVcard(describe(other))),
    }
}

pub(crate) fn parse_icalendar(data: &str) -> Result<ICalendar, RecordError> {
    let mut parser = Parser::new(data);
    let cal = match parser.entry() {
        Entry::ICalendar(cal) => cal,
        Entry::VCard(_) => return Err(RecordError::NotICalendar("it is a vCard".into())),
        other => return Err(RecordError::NotICalendar(describe(other))),
    };
    if cal.components.len() > MAX_COMPONENTS {
        return Err(RecordError::NotICalendar(format!(
            "more than {MAX_COMPONENTS} components"
        )));
    }
    match parser.entry() {
        Entry::Eof => Ok(cal),
        Entry::VCard(_) | Entry::ICalendar(_) => Err(RecordError::Several(
            "a second iCalendar object follows".into(),
        )),
        other => Err(RecordError::NotICalendar(describe(other))),
    }
}

fn describe(entry: Entry) -> String {
    match entry {
        Entry::InvalidLine(line) => {
            let mut l: String = line.chars().take(60).collect();
            if l.len() < line.len() {
                l.push('…');
            }
            format!("a line it cannot read: {l:?}")
        }
        Entry::UnexpectedComponentEnd { expected, found } => format!(
            "END:{} where END:{} was expected",
            found.as_str(),
            expected.as_str()
        ),
        Entry::UnterminatedComponent(c) => format!("BEGIN:{c} is never ended"),
        Entry::TooManyComponents => "too many components".into(),
        Entry::Eof => "nothing in it".into(),
        Entry::VCard(_) => "a vCard".into(),
        Entry::ICalendar(_) => "an iCalendar object".into(),
        _ => "it cannot be read".into(),
    }
}

pub(crate) fn component_type(database: Database) -> ICalendarComponentType {
    match database {
        Database::Tasks => ICalendarComponentType::VTodo,
        Database::Memos => ICalendarComponentType::VJournal,
        _ => ICalendarComponentType::VEvent,
    }
}

/// The record's UID and its main component: the first VEVENT/VTODO/VJOURNAL without a
/// RECURRENCE-ID (or the first at all). Every such component must share that UID (the others
/// are a recurring event's overrides).
pub(crate) fn main_component(
    database: Database,
    cal: &ICalendar,
) -> Result<(String, &ICalendarComponent), RecordError> {
    let want = component_type(database);
    let matching: Vec<&ICalendarComponent> = cal
        .components
        .iter()
        .filter(|c| c.component_type == want)
        .collect();
    let Some(first) = matching
        .iter()
        .find(|c| !c.has_property(&ICalendarProperty::RecurrenceId))
        .or(matching.first())
        .copied()
    else {
        return Err(RecordError::WrongComponent {
            want: database.component().unwrap_or("VEVENT"),
            database,
        });
    };
    let uid = first
        .uid()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or(RecordError::NoUid)?;
    if let Some(other) = matching
        .iter()
        .filter_map(|c| c.uid())
        .find(|u| u.trim() != uid)
    {
        return Err(RecordError::Several(format!(
            "UIDs {uid:?} and {:?}",
            other.chars().take(60).collect::<String>()
        )));
    }
    Ok((check_uid(uid)?, first))
}

fn contact_summary(card: &VCard) -> Summary {
    let text = |p: &VCardProperty| -> Option<String> {
        card.property(p)
            .map(vcard_text)
            .filter(|s| !s.trim().is_empty())
    };
    let all = |p: &VCardProperty| -> Vec<String> {
        card.properties(p)
            .map(vcard_text)
            .map(|s| s.strip_prefix("tel:").map(str::to_owned).unwrap_or(s))
            .filter(|s| !s.trim().is_empty())
            .collect()
    };
    let title = text(&VCardProperty::Fn)
        .or_else(|| {
            // No FN (vCard 3 requires one, not every writer obeys): "Given Family" from N.
            card.property(&VCardProperty::N).map(|n| {
                let parts: Vec<&str> = n.values.iter().filter_map(VCardValue::as_text).collect();
                let family = parts.first().copied().unwrap_or_default();
                let given = parts.get(1).copied().unwrap_or_default();
                format!("{given} {family}").trim().to_owned()
            })
        })
        .unwrap_or_default();
    let modified_ms = card.property(&VCardProperty::Rev).and_then(|e| {
        e.values.iter().find_map(|v| match v {
            VCardValue::PartialDateTime(d) => d.to_timestamp().map(|s| s * 1000),
            _ => None,
        })
    });
    Summary {
        title,
        emails: all(&VCardProperty::Email),
        phones: all(&VCardProperty::Tel),
        organization: text(&VCardProperty::Org),
        note: text(&VCardProperty::Note),
        modified_ms,
        ..Summary::default()
    }
}

/// A vCard property's values as text (a structured value's parts joined by spaces).
fn vcard_text(e: &VCardEntry) -> String {
    e.values
        .iter()
        .filter_map(VCardValue::as_text)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn component_summary(database: Database, c: &ICalendarComponent) -> Summary {
    let text = |p: &ICalendarProperty| -> Option<String> {
        c.property(p)
            .and_then(|e| e.values.first())
            .and_then(ICalendarValue::as_text)
            .map(str::to_owned)
            .filter(|s| !s.trim().is_empty())
    };
    let time = |p: &ICalendarProperty| c.property(p).and_then(date_of);
    let start = time(&ICalendarProperty::Dtstart);
    let end = time(&ICalendarProperty::Dtend);
    let due = time(&ICalendarProperty::Due);
    let address = |e: &ICalendarEntry| {
        e.values
            .first()
            .and_then(ICalendarValue::as_text)
            .map(|a| calcard::icalendar::utils::strip_mailto_scheme(a).to_owned())
    };
    let organizer = c.property(&ICalendarProperty::Organizer).and_then(address);
    let attendees: Vec<String> = c
        .properties(&ICalendarProperty::Attendee)
        .filter_map(address)
        .collect();
    let recurrence = c
        .property(&ICalendarProperty::Rrule)
        .and_then(|e| e.values.first())
        .and_then(|v| match v {
            ICalendarValue::RecurrenceRule(r) => Some(r.to_string()),
            other => other.as_text().map(str::to_owned),
        });
    let modified_ms = time(&ICalendarProperty::LastModified)
        .or_else(|| time(&ICalendarProperty::Dtstamp))
        .and_then(|d| d.ms);
    let completed = c.property(&ICalendarProperty::Completed).is_some()
        || text(&ICalendarProperty::Status).is_some_and(|s| s.eq_ignore_ascii_case("COMPLETED"));
    let when = match database {
        Database::Tasks => due.as_ref(),
        _ => start.as_ref(),
    };
    Summary {
        title: text(&ICalendarProperty::Summary).unwrap_or_default(),
        when_ms: when.and_then(|d| d.ms),
        all_day: database == Database::Calendar && start.as_ref().is_some_and(|d| d.date_only),
        start: start.map(|d| d.text),
        end: end.map(|d| d.text),
        due: due.map(|d| d.text),
        location: text(&ICalendarProperty::Location),
        recurrence,
        invitation: organizer.is_some() && !attendees.is_empty(),
        organizer,
        attendees,
        completed: database == Database::Tasks && completed,
        note: text(&ICalendarProperty::Description),
        modified_ms,
        ..Summary::default()
    }
}

/// A date or date-time as a phone shows it.
struct When {
    text: String,
    ms: Option<i64>,
    date_only: bool,
}

fn date_of(e: &ICalendarEntry) -> Option<When> {
    let d = e.values.iter().find_map(|v| match v {
        ICalendarValue::PartialDateTime(d) => Some(d),
        _ => None,
    })?;
    let (y, mo, da) = (d.year?, d.month?, d.day?);
    let date_only = d.hour.is_none();
    let mut text = format!("{y:04}-{mo:02}-{da:02}");
    if let (Some(h), Some(mi)) = (d.hour, d.minute) {
        text.push_str(&format!(" {h:02}:{mi:02}"));
        if d.tz_hour == Some(0) && d.tz_minute.unwrap_or(0) == 0 {
            text.push_str(" UTC");
        } else if let Some(tz) = e.params.iter().find_map(|p| {
            (p.name == calcard::icalendar::ICalendarParameterName::Tzid)
                .then(|| p.value.as_text().map(str::to_owned))
                .flatten()
        }) {
            text.push_str(&format!(" ({tz})"));
        }
    }
    Some(When {
        text,
        ms: d.to_timestamp().map(|s| s.saturating_mul(1000)),
        date_only,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARD: &str = "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:c-1\r\nFN:Carol Example\r\nN:Example;Carol;;;\r\nEMAIL;TYPE=work:carol@example.com\r\nTEL:+1 555 0100\r\nORG:Example Inc.\r\nREV:20261201T100000Z\r\nEND:VCARD\r\n";

    const MEETING: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:e-1\r\nDTSTAMP:20261201T090000Z\r\nDTSTART:20261224T100000Z\r\nDTEND:20261224T110000Z\r\nSUMMARY:Planning\\, next year\r\nLOCATION:Room 4\r\nRRULE:FREQ=WEEKLY;BYDAY=TH\r\nORGANIZER:mailto:alice@example.com\r\nATTENDEE;PARTSTAT=NEEDS-ACTION:mailto:bob@example.com\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

    #[test]
    fn a_contact_is_summarised() {
        let r = parse(Database::Contacts, CARD).expect("a good vCard");
        assert_eq!(r.uid, "c-1");
        assert_eq!(r.summary.title, "Carol Example");
        assert_eq!(r.summary.emails, ["carol@example.com"]);
        assert_eq!(r.summary.phones, ["+1 555 0100"]);
        assert_eq!(r.summary.organization.as_deref(), Some("Example Inc."));
        assert_eq!(r.summary.modified_ms, Some(1_796_119_200_000));
    }

    #[test]
    fn a_meeting_invitation_is_summarised() {
        let r = parse(Database::Calendar, MEETING).expect("a good event");
        assert_eq!(r.uid, "e-1");
        let s = &r.summary;
        assert_eq!(s.title, "Planning, next year");
        assert_eq!(s.start.as_deref(), Some("2026-12-24 10:00 UTC"));
        assert_eq!(s.end.as_deref(), Some("2026-12-24 11:00 UTC"));
        assert_eq!(s.location.as_deref(), Some("Room 4"));
        assert!(
            s.recurrence
                .as_deref()
                .is_some_and(|r| r.contains("WEEKLY"))
        );
        assert_eq!(s.organizer.as_deref(), Some("alice@example.com"));
        assert_eq!(s.attendees, ["bob@example.com"]);
        assert!(s.invitation);
        assert!(!s.all_day);
    }

    #[test]
    fn records_in_the_wrong_database_or_broken_are_refused_in_words() {
        assert!(matches!(
            parse(Database::Contacts, MEETING),
            Err(RecordError::NotVcard(_))
        ));
        assert!(matches!(
            parse(Database::Tasks, MEETING),
            Err(RecordError::WrongComponent { want: "VTODO", .. })
        ));
        assert_eq!(parse(Database::Memos, "  \r\n"), Err(RecordError::Empty));
        let no_uid = CARD.replace("UID:c-1\r\n", "");
        assert_eq!(parse(Database::Contacts, &no_uid), Err(RecordError::NoUid));
        let two = format!("{CARD}{CARD}");
        assert!(matches!(
            parse(Database::Contacts, &two),
            Err(RecordError::Several(_))
        ));
        let big = "x".repeat(MAX_RECORD + 1);
        assert!(matches!(
            parse(Database::Contacts, &big),
            Err(RecordError::TooLarge { .. })
        ));
        for junk in [
            "BEGIN:VCARD\r\nFN:no end",
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nEND:VTODO\r\nEND:VCALENDAR",
            "\u{0}\u{1}garbage",
        ] {
            for db in Database::ALL {
                let e = parse(db, junk).expect_err("junk is refused");
                assert!(!e.to_string().is_empty());
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in ".{0,400}") {
            for db in Database::ALL {
                let _ = parse(db, &s);
            }
        }

        #[test]
        fn mangled_records_never_panic(cut in 0usize..400, junk in ".{0,40}") {
            for (db, base) in [(Database::Contacts, CARD), (Database::Calendar, MEETING)] {
                let cut = cut.min(base.len());
                let mut s: String = base.chars().take(cut).collect();
                s.push_str(&junk);
                s.push_str(base.get(cut..).unwrap_or_default());
                let _ = parse(db, &s);
            }
        }
    }
}
