-- The consent ledger: an append-only, hash-chained history of opt-ins and opt-outs.

-- What a person was shown when they consented, stored once by its SHA-256.
CREATE TABLE consent_notices (
    hash        TEXT PRIMARY KEY NOT NULL,
    text        TEXT NOT NULL,
    recorded_at TEXT NOT NULL
) STRICT;

CREATE TABLE consent_events (
    id           INTEGER PRIMARY KEY NOT NULL,
    -- The number as recorded, in E.164 (+525512345678).
    subject      TEXT NOT NULL,
    -- The same for every spelling WhatsApp produces of one number (+52 1 / +52,
    -- +54 9 / +54, Brazil's ninth digit): consent is matched on this.
    subject_key  INTEGER NOT NULL,
    purpose      TEXT NOT NULL CHECK (purpose IN ('marketing', 'utility', 'all')),
    action       TEXT NOT NULL CHECK (action IN ('opt_in', 'opt_out')),
    -- When the person acted (from the source), and when this row was written; both
    -- UTC, RFC 3339, to the second.
    occurred_at  TEXT NOT NULL,
    recorded_at  TEXT NOT NULL,
    -- How the person acted: web_form, paper, whatsapp_reply, api, operator, ...
    method       TEXT NOT NULL,
    -- How the event reached the ledger: import, command, webhook, campaign. An
    -- import never undoes an opt-out.
    recorded_via TEXT NOT NULL,
    -- The proof: a form id and version, a message id, a file's SHA-256 and line.
    source       TEXT NOT NULL,
    evidence     TEXT,
    notice_hash  TEXT REFERENCES consent_notices (hash),
    actor        TEXT NOT NULL,
    -- Makes re-imports of the same file record nothing new.
    dedupe_key   TEXT UNIQUE,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL,
    CHECK (NOT (purpose = 'all' AND action = 'opt_in'))
) STRICT;

CREATE INDEX consent_events_by_subject ON consent_events (subject_key, occurred_at, id);

CREATE TRIGGER consent_events_append_only_update BEFORE UPDATE ON consent_events
BEGIN
    SELECT RAISE(ABORT, 'consent_events is append-only: record a new event instead');
END;

CREATE TRIGGER consent_events_append_only_delete BEFORE DELETE ON consent_events
BEGIN
    SELECT RAISE(ABORT, 'consent_events is append-only: record an opt-out instead');
END;

CREATE TRIGGER consent_notices_append_only_update BEFORE UPDATE ON consent_notices
BEGIN
    SELECT RAISE(ABORT, 'consent_notices is append-only');
END;

CREATE TRIGGER consent_notices_append_only_delete BEFORE DELETE ON consent_notices
BEGIN
    SELECT RAISE(ABORT, 'consent_notices is append-only');
END;
