-- Every ETP.DAT the messaging agent has acted on, by its SHA-256, so a second copy of the
-- same activation mail (a replay) is recognised and ignored.
CREATE TABLE activation_requests (
    hash    BLOB    NOT NULL PRIMARY KEY,
    email   TEXT    NOT NULL,
    pin     INTEGER NOT NULL,
    seen_at INTEGER NOT NULL
) STRICT;
