-- Every ETP.DAT the messaging agent has acted on, by its SHA-256, so a second copy of the
-- same activation mail (a replay) is recognised and ignored.
CREATE TABLE activation_requests (
    hash    BYTEA  NOT NULL PRIMARY KEY,
    email   TEXT   NOT NULL,
    pin     BIGINT NOT NULL,
    seen_at BIGINT NOT NULL
);
