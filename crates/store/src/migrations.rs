//! The schema's versioned migrations, embedded in the binary: one `(version, description,
//! SQL)` for each file `migrations/<backend>/NNNN_description.sql`, turned into the
//! [`Migrator`] that brings a database up to date.
//!
//! Owns: the list of migration files. Must not: hold SQL of its own (it lives in the files).
//!
//! Written out instead of `sqlx::migrate!` because sqlx's procedural macros build both
//! database drivers a second time, for the compiler, in every build. Versions, descriptions
//! and checksums (SHA-384 of the file) are those `sqlx::migrate!` gives, so a database it
//! migrated still validates. A test checks the lists against the directories.

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// `(version, description, SQL)` of one migration.
pub(crate) type Embedded = (i64, &'static str, &'static str);

/// SQLite's migrations, oldest first.
pub(crate) const SQLITE: &[Embedded] = &[
    (
        1,
        "initial",
        include_str!("../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "server secrets",
        include_str!("../migrations/sqlite/0002_server_secrets.sql"),
    ),
    (
        3,
        "activation requests",
        include_str!("../migrations/sqlite/0003_activation_requests.sql"),
    ),
    (
        4,
        "mail credentials",
        include_str!("../migrations/sqlite/0004_mail_credentials.sql"),
    ),
    (
        5,
        "mail",
        include_str!("../migrations/sqlite/0005_mail.sql"),
    ),
    (
        6,
        "mail filters",
        include_str!("../migrations/sqlite/0006_mail_filters.sql"),
    ),
    (
        7,
        "mail reconcile",
        include_str!("../migrations/sqlite/0007_mail_reconcile.sql"),
    ),
    (
        8,
        "policy",
        include_str!("../migrations/sqlite/0008_policy.sql"),
    ),
    (
        9,
        "sync",
        include_str!("../migrations/sqlite/0009_sync.sql"),
    ),
    (
        10,
        "admin",
        include_str!("../migrations/sqlite/0010_admin.sql"),
    ),
    (
        11,
        "directory",
        include_str!("../migrations/sqlite/0011_directory.sql"),
    ),
];

/// PostgreSQL's migrations, oldest first.
pub(crate) const POSTGRES: &[Embedded] = &[
    (
        1,
        "initial",
        include_str!("../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "server secrets",
        include_str!("../migrations/postgres/0002_server_secrets.sql"),
    ),
    (
        3,
        "activation requests",
        include_str!("../migrations/postgres/0003_activation_requests.sql"),
    ),
    (
        4,
        "mail credentials",
        include_str!("../migrations/postgres/0004_mail_credentials.sql"),
    ),
    (
        5,
        "mail",
        include_str!("../migrations/postgres/0005_mail.sql"),
    ),
    (
        6,
        "mail filters",
        include_str!("../migrations/postgres/0006_mail_filters.sql"),
    ),
    (
        7,
        "mail reconcile",
        include_str!("../migrations/postgres/0007_mail_reconcile.sql"),
    ),
    (
        8,
        "policy",
        include_str!("../migrations/postgres/0008_policy.sql"),
    ),
    (
        9,
        "sync",
        include_str!("../migrations/postgres/0009_sync.sql"),
    ),
    (
        10,
        "admin",
        include_str!("../migrations/postgres/0010_admin.sql"),
    ),
    (
        11,
        "directory",
        include_str!("../migrations/postgres/0011_directory.sql"),
    ),
];

/// The migrator of a list. A file starting with `-- no-transaction` runs outside a
/// transaction, as with `sqlx::migrate!`.
pub(crate) fn migrator(list: &[Embedded]) -> Migrator {
    Migrator::with_migrations(
        list.iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    description.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    sql.starts_with("-- no-transaction"),
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of the directory is in the list, in order, with its content.
    fn matches_directory(backend: &str, list: &[Embedded]) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(backend);
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .expect("the migrations directory")
            .map(|e| {
                e.expect("a directory entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        files.sort();
        let listed: Vec<String> = list
            .iter()
            .map(|(v, d, _)| format!("{v:04}_{}.sql", d.replace(' ', "_")))
            .collect();
        assert_eq!(
            files, listed,
            "{backend}: add the new file to migrations.rs"
        );
        for ((_, _, sql), file) in list.iter().zip(&files) {
            let on_disk = std::fs::read_to_string(dir.join(file)).expect("a migration file");
            assert_eq!(*sql, on_disk, "{file}");
        }
    }

    #[test]
    fn the_lists_are_the_migration_files() {
        matches_directory("sqlite", SQLITE);
        matches_directory("postgres", POSTGRES);
        assert_eq!(migrator(SQLITE).iter().count(), SQLITE.len());
    }
}
