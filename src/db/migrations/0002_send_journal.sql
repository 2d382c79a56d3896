-- The send journal: one row per (campaign, recipient), so a crash, a kill or a re-run
-- never messages anyone twice.

CREATE TABLE campaigns (
    id          TEXT PRIMARY KEY NOT NULL,
    -- Digest of the template, language, body and parameter mapping: a campaign id
    -- is refused if it changes after someone was messaged.
    fingerprint TEXT NOT NULL,
    template    TEXT NOT NULL,
    language    TEXT NOT NULL,
    category    TEXT NOT NULL,
    provider    TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    -- The latest planning run: only rows planned by it are sent.
    plan_run    INTEGER NOT NULL DEFAULT 0,
    halted_at   TEXT,
    halt_reason TEXT
) STRICT;

CREATE TABLE journal (
    campaign_id   TEXT NOT NULL REFERENCES campaigns (id),
    -- The recipient's E.164 digits: the journal key.
    contact_key   INTEGER NOT NULL,
    phone         TEXT NOT NULL,
    line          INTEGER NOT NULL,
    -- Send order: the contact's position in the plan.
    seq           INTEGER NOT NULL,
    plan_run      INTEGER NOT NULL,
    -- The rendered values, a JSON array in placeholder order.
    params        TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN
                    ('planned', 'in_flight', 'accepted', 'failed', 'in_doubt', 'deferred', 'opted_out')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    message_id    TEXT,
    wa_id         TEXT,
    message_status TEXT,
    error_code    INTEGER,
    error_detail  TEXT,
    retry_at      TEXT,
    -- When the intent to send was made durable, and when the outcome was.
    intent_at     TEXT,
    outcome_at    TEXT,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (campaign_id, contact_key)
) STRICT, WITHOUT ROWID;

CREATE INDEX journal_by_state ON journal (campaign_id, state, seq);
CREATE INDEX journal_by_message_id ON journal (message_id) WHERE message_id IS NOT NULL;
