-- Less work per message on the send path, where every message changes its journal
-- row twice (planned → in_flight at the claim, in_flight → its outcome) and each
-- commit of a batch writes every page it touched to the WAL, a 4 KiB frame each.
--
-- 1. The state's CHECK as comparisons instead of `IN (...)`. SQLite evaluates a
--    CHECK on every row whose state changes, and builds a temporary b-tree of an
--    IN list longer than two for each evaluation (inside a constraint it cannot
--    keep one for the statement): about 2 µs per state change, and a message
--    changes state twice. The comparisons accept exactly the same states. A CHECK
--    cannot be altered in place, so the table is rebuilt, every row and id kept.
--
-- 2. `person_id` is a number's consent key: one person's rows lie nowhere near the
--    rows claimed with them, so every index led by it writes one page per row at
--    every commit. 0010's person index held accepted and in-flight rows, so each
--    message moved in it twice: inserted at the claim, moved again when its outcome
--    set outcome_at. Accepted rows are now indexed apart, entered once, when the
--    message is accepted; rows in flight get their own index, which only ever holds
--    the few rows in flight (a page or two however large the journal), so the claim
--    and the outcome write the same few pages for a whole batch.
--
-- 3. Accepted rows by time, ordered within a second by row id rather than by
--    person: a second's thousand acceptances were spread over the pages of that
--    second in person order; in row order each batch appends to the last page.

CREATE TABLE journal_rebuilt (
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
    state          TEXT NOT NULL CHECK (
                     state = 'planned' OR state = 'in_flight' OR state = 'accepted'
                     OR state = 'failed' OR state = 'in_doubt' OR state = 'deferred'
                     OR state = 'opted_out' OR state = 'expired'),
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
    -- The contact's time zone when the contacts file gives one (0010).
    time_zone      TEXT,
    -- The contact's own columns as the plan read them, a JSON object (0010).
    contact        TEXT,
    -- The message's delivery statuses folded onto the row (0013, journal::fold).
    status_rank    INTEGER,
    delivered_ts   INTEGER,
    read_ts        INTEGER,
    status_error_code INTEGER,
    status_error_detail TEXT,
    billable       INTEGER,
    pricing_category TEXT,
    pricing_type   TEXT,
    UNIQUE (campaign_id, person_id, occurrence),
    CHECK (phone IS NOT NULL OR bsuid IS NOT NULL)
) STRICT;

INSERT INTO journal_rebuilt (id, campaign_id, person_id, occurrence, phone, bsuid, line, seq,
    plan_run, params, state, attempts, deferrals, message_id, wa_id, message_status, error_code,
    error_detail, retry_at, send_by, intent_at, outcome_at, updated_at, time_zone, contact,
    status_rank, delivered_ts, read_ts, status_error_code, status_error_detail, billable,
    pricing_category, pricing_type)
SELECT id, campaign_id, person_id, occurrence, phone, bsuid, line, seq,
    plan_run, params, state, attempts, deferrals, message_id, wa_id, message_status, error_code,
    error_detail, retry_at, send_by, intent_at, outcome_at, updated_at, time_zone, contact,
    status_rank, delivered_ts, read_ts, status_error_code, status_error_detail, billable,
    pricing_category, pricing_type
FROM journal ORDER BY id;

DROP TABLE journal;
ALTER TABLE journal_rebuilt RENAME TO journal;

CREATE INDEX journal_by_state ON journal (campaign_id, state, seq);
CREATE INDEX journal_by_message_id ON journal (message_id) WHERE message_id IS NOT NULL;
-- Deferred rows by when they are due, for the claim and for "next retry at".
CREATE INDEX journal_due ON journal (campaign_id, plan_run, retry_at) WHERE state = 'deferred';
-- Frequency caps count each person's accepted messages across campaigns: by time
-- for the plan (one scan of the cap's window), by person for the moment of sending,
-- where messages another campaign has in flight count too.
CREATE INDEX journal_accepted_by_time ON journal (outcome_at, id, person_id, campaign_id)
    WHERE state = 'accepted';
CREATE INDEX journal_accepted_by_person ON journal (person_id, outcome_at)
    WHERE state = 'accepted';
CREATE INDEX journal_in_flight_by_person ON journal (person_id)
    WHERE state = 'in_flight';
