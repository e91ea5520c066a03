-- Per-user mailbox credentials for servers that have no service account: the password is
-- kept encrypted by the server (AES-256-GCM under a key among its secrets), never in clear.
CREATE TABLE mail_credentials (
    user_id    BIGINT NOT NULL PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    sealed     BYTEA  NOT NULL,
    updated_at BIGINT NOT NULL
);
