-- The journal keyed by (campaign, person, occurrence).
--
-- A person is who WhatsApp delivers to: a phone number (every spelling WhatsApp
-- produces of one number is one person, so `+54 9 11…` and `+54 11…` share a row),
-- a business-scoped user ID (BSUID), or both once they are linked. `person_id` is the
-- number's consent key for a person with a number, and a negative id of its own for
-- a BSUID seen without one (see `identities`). An occurrence names one of several
-- messages a recurring campaign sends the same person (an appointment, a date); it
-- is empty for one message per person.
--
-- `wa_consent_key` is a function the program registers before migrating (the rules
-- are in src/phone.rs): old rows keyed by their E.164 digits get their person's key.

CREATE TABLE identities (
    bsuid      TEXT PRIMARY KEY NOT NULL,
    person_id  INTEGER NOT NULL,
    -- The number it was seen with, E.164, when one was.
    phone      TEXT,
    linked_at  TEXT NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX identities_by_person ON identities (person_id);

-- A rowid table, rows numbered in plan order: a batch of claims (and their outcomes)
-- touches a page or two of the table, where a table ordered by person would touch a
-- page per row, each a 4 KiB frame in the WAL at every commit.
CREATE TABLE journal_by_person (
    id             INTEGER PRIMARY KEY,
    campaign_id    TEXT NOT NULL REFERENCES campaigns (id),
    person_id      INTEGER NOT NULL,
    occurrence     TEXT NOT NULL DEFAULT '',
    -- Where the message goes: E.164 and/or the BSUID, as planned.
    phone          TEXT,
    bsuid          TEXT,
    line           INTEGER NOT NULL,
    -- Send order: the contact's position in the plan.
    seq            INTEGER NOT NULL,
    plan_run       INTEGER NOT NULL,
    -- The rendered values, a JSON array in placeholder order.
    params         TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN
                     ('planned', 'in_flight', 'accepted', 'failed', 'in_doubt', 'deferred',
                      'opted_out', 'expired')),
    attempts       INTEGER NOT NULL DEFAULT 0,
    -- How many times it was deferred by a rule (quiet hours, a cap, 131049), apart
    -- from retries of transient errors.
    deferrals      INTEGER NOT NULL DEFAULT 0,
    message_id     TEXT,
    wa_id          TEXT,
    message_status TEXT,
    error_code     INTEGER,
    error_detail   TEXT,
    retry_at       TEXT,
    -- Past this instant the occurrence is useless (a reminder after the appointment):
    -- it expires instead of being sent.
    send_by        TEXT,
    intent_at      TEXT,
    outcome_at     TEXT,
    updated_at     TEXT NOT NULL,
    UNIQUE (campaign_id, person_id, occurrence),
    CHECK (phone IS NOT NULL OR bsuid IS NOT NULL)
) STRICT;

-- Every old row is kept. Two old rows that turn out to be one person (a number spelt
-- two ways by two runs, the gap this key closes) keep both: the later one under the
-- occurrence `legacy:<its old digits>`.
INSERT INTO journal_by_person (campaign_id, person_id, occurrence, phone, line, seq, plan_run,
    params, state, attempts, message_id, wa_id, message_status, error_code, error_detail,
    retry_at, intent_at, outcome_at, updated_at)
SELECT campaign_id, wa_consent_key(contact_key), '', phone, line, seq, plan_run, params, state,
    attempts, message_id, wa_id, message_status, error_code, error_detail, retry_at, intent_at,
    outcome_at, updated_at
FROM journal WHERE true
ORDER BY (state = 'planned'), campaign_id, seq
ON CONFLICT DO NOTHING;

INSERT INTO journal_by_person (campaign_id, person_id, occurrence, phone, line, seq, plan_run,
    params, state, attempts, message_id, wa_id, message_status, error_code, error_detail,
    retry_at, intent_at, outcome_at, updated_at)
SELECT j.campaign_id, wa_consent_key(j.contact_key), 'legacy:' || j.contact_key, j.phone, j.line,
    j.seq, j.plan_run, j.params, j.state, j.attempts, j.message_id, j.wa_id, j.message_status,
    j.error_code, j.error_detail, j.retry_at, j.intent_at, j.outcome_at, j.updated_at
FROM journal j
WHERE NOT EXISTS (SELECT 1 FROM journal_by_person n
                  WHERE n.campaign_id = j.campaign_id AND n.person_id = wa_consent_key(j.contact_key)
                    AND n.occurrence = '' AND n.phone = j.phone);

DROP TABLE journal;
ALTER TABLE journal_by_person RENAME TO journal;

CREATE INDEX journal_by_state ON journal (campaign_id, state, seq);
CREATE INDEX journal_by_message_id ON journal (message_id) WHERE message_id IS NOT NULL;
-- Deferred rows by when they are due, for the claim and for "next retry at".
CREATE INDEX journal_due ON journal (campaign_id, plan_run, retry_at) WHERE state = 'deferred';

-- Statuses name their journal row by the same key.
ALTER TABLE message_statuses RENAME COLUMN contact_key TO person_id;
ALTER TABLE message_statuses ADD COLUMN occurrence TEXT;
UPDATE message_statuses SET person_id = wa_consent_key(person_id), occurrence = ''
WHERE person_id IS NOT NULL;
DROP INDEX message_statuses_by_row;
CREATE INDEX message_statuses_by_row ON message_statuses (campaign_id, person_id, occurrence)
    WHERE campaign_id IS NOT NULL;
