-- Per-user mailbox credentials for servers that have no service account: the password is
-- kept encrypted by the server (AES-256-GCM under a key among its secrets), never in clear.
CREATE TABLE mail_credentials (
    user_id    INTEGER NOT NULL PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    sealed     BLOB    NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
