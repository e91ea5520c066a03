-- The administration service (seed 002, BlackBerry Administration Service): administrator
-- accounts, their roles (the six BES 5 presets and custom ones), login sessions, API tokens,
-- and the audit log of every change and command.
-- Passwords are kept only as Argon2id PHC strings; sessions and tokens only as SHA-256 hex of
-- the secret. Permissions are the server's names, space-separated (the server checks them).
-- Keep in step with ../postgres/0010_admin.sql.

CREATE TABLE admin_roles (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL,
    name_key    TEXT    NOT NULL UNIQUE,
    description TEXT,
    -- 1 for the BES presets: the server keeps their permissions, nobody edits or deletes them
    preset      INTEGER NOT NULL DEFAULT 0 CHECK (preset IN (0, 1)),
    permissions TEXT    NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE admin_accounts (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL,
    name_key      TEXT    NOT NULL UNIQUE,
    display_name  TEXT,
    email         TEXT,
    -- NULL: the account cannot log in with a password (API tokens only)
    password_hash TEXT,
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at    INTEGER NOT NULL,
    last_login_at INTEGER
) STRICT;

CREATE TABLE admin_account_roles (
    account_id INTEGER NOT NULL REFERENCES admin_accounts (id) ON DELETE CASCADE,
    role_id    INTEGER NOT NULL REFERENCES admin_roles (id) ON DELETE CASCADE,
    PRIMARY KEY (account_id, role_id)
) STRICT;

CREATE INDEX admin_account_roles_role ON admin_account_roles (role_id);

-- Console login sessions.
CREATE TABLE admin_sessions (
    token_hash   TEXT    PRIMARY KEY,
    account_id   INTEGER NOT NULL REFERENCES admin_accounts (id) ON DELETE CASCADE,
    source       TEXT,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) STRICT;

CREATE INDEX admin_sessions_account ON admin_sessions (account_id);

-- API tokens (Authorization: Bearer), named by their owner.
CREATE TABLE admin_tokens (
    id           INTEGER PRIMARY KEY,
    account_id   INTEGER NOT NULL REFERENCES admin_accounts (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    token_hash   TEXT    NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    expires_at   INTEGER
) STRICT;

CREATE INDEX admin_tokens_account ON admin_tokens (account_id);

-- Who did what, when, from where, and how it went. Append-only.
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    actor   TEXT    NOT NULL,
    source  TEXT,
    action  TEXT    NOT NULL,
    target  TEXT,
    detail  TEXT,
    -- success, denied, failed
    result  TEXT    NOT NULL,
    status  INTEGER NOT NULL
) STRICT;

CREATE INDEX audit_log_at ON audit_log (at, id);
CREATE INDEX audit_log_actor ON audit_log (actor, at);
