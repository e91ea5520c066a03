-- Push mail (seed 002, "Email message flow"): the RefID map, delivery confirmations, the
-- outbox of messages sent from devices, the IMAP position of each watched folder, and each
-- user's mail settings. Keep in step with ../postgres/0005_mail.sql.

-- One row per message forwarded to a user's device. ref_id is the RefID the device sees.
-- source_key names the message in its mail store ("imap:UIDVALIDITY:UID" or
-- "maildir:UNIQUE-NAME"), so a message found again after a crash is recognised.
CREATE TABLE mail_items (
    ref_id       INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    folder       TEXT    NOT NULL,
    source_key   TEXT    NOT NULL,
    uid_validity INTEGER CHECK (uid_validity BETWEEN 0 AND 4294967295),
    uid          INTEGER CHECK (uid BETWEEN 0 AND 4294967295),
    message_id   TEXT,
    -- the encoded bramble.v1.MailItem, ref_id and resent left at 0
    item         BLOB    NOT NULL,
    -- 'pending' (not confirmed by the device), 'delivered', 'removed' (gone from the mailbox
    -- before it was confirmed)
    state        TEXT    NOT NULL DEFAULT 'pending',
    created_at   INTEGER NOT NULL,
    -- the last time it was handed to the relay, and as which frame
    sent_at      INTEGER,
    sent_seq     INTEGER,
    sent_count   INTEGER NOT NULL DEFAULT 0,
    -- the relay reported the last send queued or delivered
    relayed_at   INTEGER,
    confirmed_at INTEGER,
    CONSTRAINT mail_items_source_unique UNIQUE (user_id, folder, source_key)
) STRICT;

CREATE INDEX mail_items_pending ON mail_items (state, sent_at);
CREATE INDEX mail_items_seq ON mail_items (user_id, sent_seq);

-- How far the messaging agent has looked through each IMAP folder.
CREATE TABLE mail_cursors (
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    folder       TEXT    NOT NULL,
    uid_validity INTEGER NOT NULL CHECK (uid_validity BETWEEN 0 AND 4294967295),
    next_uid     INTEGER NOT NULL CHECK (next_uid BETWEEN 0 AND 4294967295),
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (user_id, folder)
) STRICT;

-- Messages sent from devices: stored before the device is told they were accepted, sent
-- once. (pin, client_id) recognises a repeated submission.
CREATE TABLE mail_outbox (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    pin        INTEGER NOT NULL CHECK (pin BETWEEN 0 AND 4294967295),
    client_id  INTEGER NOT NULL,
    -- the encoded bramble.v1.MailSubmit
    request    BLOB    NOT NULL,
    -- 'queued', 'sending' (handed to SMTP, outcome not yet recorded), 'sent', 'failed'
    state      TEXT    NOT NULL DEFAULT 'queued',
    message_id TEXT,
    error      TEXT,
    attempts   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    CONSTRAINT mail_outbox_client_unique UNIQUE (user_id, pin, client_id)
) STRICT;

CREATE INDEX mail_outbox_state ON mail_outbox (state, id);

-- Per-user mail settings; a user without a row has the defaults.
CREATE TABLE mail_settings (
    user_id    INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    -- forward new mail to the device
    push       INTEGER NOT NULL DEFAULT 1 CHECK (push IN (0, 1)),
    -- keep a copy of mail sent from the device in the Sent folder
    save_sent  INTEGER NOT NULL DEFAULT 1 CHECK (save_sent IN (0, 1)),
    -- reconcile read/unread, flags, deletes and moves both ways
    reconcile  INTEGER NOT NULL DEFAULT 1 CHECK (reconcile IN (0, 1)),
    updated_at INTEGER NOT NULL
) STRICT;
