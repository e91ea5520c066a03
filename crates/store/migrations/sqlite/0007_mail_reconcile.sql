-- Push-mail reconciliation (seed 002, "Email reconciliation"): read/unread and flag state of
-- each forwarded message, the CONDSTORE position of each watched folder, and the durable queue
-- of changes a device asked for, applied to the mailbox by the messaging agent. Keep in step
-- with ../postgres/0007_mail_reconcile.sql.

-- The flags as last seen in the mailbox (or asked for by the device): 1 set, 0 not.
ALTER TABLE mail_items ADD COLUMN seen INTEGER NOT NULL DEFAULT 0 CHECK (seen IN (0, 1));
ALTER TABLE mail_items ADD COLUMN flagged INTEGER NOT NULL DEFAULT 0 CHECK (flagged IN (0, 1));

-- What the agent compares to a folder's flags: a user's items of one folder, by UID.
CREATE INDEX mail_items_folder ON mail_items (user_id, folder, uid);

-- The HIGHESTMODSEQ (RFC 7162) the folder's flags were last reconciled up to, under the
-- cursor's UIDVALIDITY; NULL when never (or the server has no CONDSTORE). A mod-sequence is a
-- 63-bit unsigned number.
ALTER TABLE mail_cursors ADD COLUMN highest_modseq INTEGER CHECK (highest_modseq >= 0);

-- Changes a device asked for (read, flag, delete, move, ...), kept until the messaging agent
-- has applied them to the mailbox; oldest first, so changes to one message keep their order.
CREATE TABLE mail_change_queue (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    ref_id     INTEGER NOT NULL REFERENCES mail_items (ref_id) ON DELETE CASCADE,
    -- the encoded change (a protobuf), opaque to the store
    change     BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    -- how many times applying it failed, and why it last did
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
) STRICT;

CREATE INDEX mail_change_queue_ref ON mail_change_queue (ref_id);
