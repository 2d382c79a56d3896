-- Replies that read like an opt-out without being a bare keyword ("please stop",
-- "no me manden más"): never acted on automatically, kept for a person to decide,
-- with the text as evidence (the ledger keeps a recorded opt-out's text in
-- consent_events.evidence; this is where it waits until then).
CREATE TABLE possible_opt_outs (
    -- The inbound message (wamid or Twilio SID): the ledger event that records it
    -- names it as its source.
    message_id  TEXT PRIMARY KEY NOT NULL,
    provider    TEXT NOT NULL,
    phone       TEXT NOT NULL,
    consent_key INTEGER NOT NULL,
    text        TEXT NOT NULL,
    -- Why it was singled out: the phrase or keyword it contains.
    reason      TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    received_at TEXT NOT NULL
) STRICT;

CREATE INDEX possible_opt_outs_by_time ON possible_opt_outs (occurred_at);

-- What Meta's status webhooks say a message is billed as: the `pricing` object
-- (billable, category, type). NULL when the status carried none (Twilio).
ALTER TABLE message_statuses ADD COLUMN billable INTEGER;
ALTER TABLE message_statuses ADD COLUMN pricing_category TEXT;
ALTER TABLE message_statuses ADD COLUMN pricing_type TEXT;
