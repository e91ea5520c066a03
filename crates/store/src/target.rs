//! Turning the database URL into connection options for one of the two backends.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

use crate::StoreError;

pub(crate) enum Target {
    Sqlite {
        options: SqliteConnectOptions,
        in_memory: bool,
    },
    Postgres(PgConnectOptions),
}

/// The scheme of `url` if it starts with one (`name:` with a name of two or more letters,
/// digits, `+`, `-` or `.`, starting with a letter). One letter is a Windows drive, not a
/// scheme.
fn scheme(url: &str) -> Option<&str> {
    let (s, _) = url.split_once(':')?;
    let mut chars = s.chars();
    let first = chars.next()?;
    (s.len() >= 2
        && first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(s)
}

pub(crate) fn parse(url: &str) -> Result<Target, StoreError> {
    let invalid = |reason: String| StoreError::InvalidUrl {
        url: redact(url),
        reason,
    };
    let url = url.trim();
    if url.is_empty() {
        return Err(invalid("it is empty".to_owned()));
    }
    let options = match scheme(url).map(str::to_ascii_lowercase).as_deref() {
        Some("postgres" | "postgresql") => {
            let options = PgConnectOptions::from_str(url).map_err(|e| invalid(e.to_string()))?;
            return Ok(Target::Postgres(options));
        }
        Some("sqlite") => {
            // sqlx matches the scheme case-sensitively.
            let rest = &url["sqlite".len()..];
            SqliteConnectOptions::from_str(&format!("sqlite{rest}"))
                .map_err(|e| invalid(e.to_string()))?
        }
        Some(other) => {
            return Err(invalid(format!(
                "`{other}:` is not a database Bramble supports"
            )));
        }
        None => SqliteConnectOptions::new().filename(url),
    };
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    Ok(Target::Sqlite {
        options: options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // Writers wait for the write lock in SQLite's busy handler, which is not a fair
            // queue: under a burst (a thousand watchers starting, fifty activations, and the
            // devices' own fsyncs on the same disk in `bramble bench push`) a writer waited
            // past 5 s and an activation failed. 30 s rides out such a burst.
            .busy_timeout(BUSY_TIMEOUT),
        in_memory,
    })
}

/// How long an SQLite statement waits for the database's write lock.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Creates the directory an SQLite file is to live in, if missing.
pub(crate) fn create_parent_dir(file: &Path) -> std::io::Result<()> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.exists() => std::fs::create_dir_all(dir),
        _ => Ok(()),
    }
}

/// The URL with the password, if any, replaced by `***`, fit for error messages and logs.
pub(crate) fn redact(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}:***{}",
        &url[..start],
        &userinfo[..colon],
        &url[start + at..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact("postgres://bramble:s3cret@db.example.com:5432/bramble"),
            "postgres://bramble:***@db.example.com:5432/bramble"
        );
        assert_eq!(
            redact("postgres://bramble@db/bramble?password=x"),
            "postgres://bramble@db/bramble?password=x"
        );
        assert_eq!(
            redact("/var/lib/bramble/bramble.db"),
            "/var/lib/bramble/bramble.db"
        );
        assert_eq!(redact("postgres://u:p@ss@h/db"), "postgres://u:***@h/db");
    }

    #[test]
    fn picks_the_backend() {
        for url in [
            "postgres://u@h/db",
            "postgresql://u@h/db",
            "PostgreSQL://u@h/db",
        ] {
            assert!(matches!(parse(url), Ok(Target::Postgres(_))), "{url}");
        }
        for url in [
            "sqlite:///tmp/x.db",
            "sqlite:x.db",
            "sqlite::memory:",
            "bramble.db",
            "/var/lib/bramble/bramble.db",
            "./data/b.db",
            "C:\\bramble\\b.db",
        ] {
            assert!(matches!(parse(url), Ok(Target::Sqlite { .. })), "{url}");
        }
        assert!(matches!(
            parse("sqlite::memory:"),
            Ok(Target::Sqlite {
                in_memory: true,
                ..
            })
        ));
        for url in ["mysql://u@h/db", "http://x", "file:x.db", "", "  "] {
            assert!(
                matches!(parse(url), Err(StoreError::InvalidUrl { .. })),
                "{url}"
            );
        }
    }
}
