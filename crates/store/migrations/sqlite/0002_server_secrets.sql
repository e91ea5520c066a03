-- Secrets the server makes once and keeps, such as its OPAQUE server setup (the OPRF seed
-- and key pair every activation-password record depends on).
CREATE TABLE server_secrets (
    name       TEXT    NOT NULL PRIMARY KEY,
    value      BLOB    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
