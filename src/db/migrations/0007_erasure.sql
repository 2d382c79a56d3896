-- Erasure that keeps the proof.
--
-- A ledger event's hash now covers a commitment to its personal fields (subject,
-- subject_key, source, evidence, dedupe_key), not the fields themselves:
-- commitment = SHA-256(salt, the fields), with a random salt kept beside them. Erasing
-- a person blanks those fields and the salt and keeps the commitment, so the chain
-- still verifies and nothing left can be hashed back to a number. Events written
-- before this migration (format 1) are re-anchored to the new form by the program
-- right after this script runs (src/consent/reanchor.rs), which records the old
-- chain's head in consent_anchors so an auditor can tie the two together.

ALTER TABLE consent_events ADD COLUMN format INTEGER NOT NULL DEFAULT 1;
ALTER TABLE consent_events ADD COLUMN salt TEXT;
ALTER TABLE consent_events ADD COLUMN commitment TEXT;

-- The old chain's head, noted when it was re-anchored: the new chain starts from
-- SHA-256("wacampaign re-anchor\n" || legacy_head || "\n" || legacy_events).
CREATE TABLE consent_anchors (
    id             INTEGER PRIMARY KEY NOT NULL,
    legacy_head    TEXT NOT NULL,
    legacy_events  INTEGER NOT NULL,
    -- NULL when the old chain verified before it was re-anchored; else its problem.
    legacy_problem TEXT,
    anchor         TEXT NOT NULL,
    recorded_at    TEXT NOT NULL
) STRICT;

CREATE TRIGGER consent_anchors_append_only_update BEFORE UPDATE ON consent_anchors
BEGIN
    SELECT RAISE(ABORT, 'consent_anchors is append-only');
END;

CREATE TRIGGER consent_anchors_append_only_delete BEFORE DELETE ON consent_anchors
BEGIN
    SELECT RAISE(ABORT, 'consent_anchors is append-only');
END;

-- The re-anchoring rewrites every old event's hash once; the trigger that allows only
-- erasures is created after it (0007_erasure_trigger.sql).
DROP TRIGGER IF EXISTS consent_events_append_only_update;

-- People erased: a keyed hash (HMAC-SHA256 with a secret kept outside the database)
-- of each of their identities, so the list excludes them from every later campaign
-- and refuses any import or opt-in for them, yet cannot be reversed by hashing every
-- phone number. `lifted_by` is the evidenced opt-in recorded after the erasure.
CREATE TABLE suppressions (
    identity_hmac TEXT PRIMARY KEY NOT NULL,
    -- phone or bsuid
    kind          TEXT NOT NULL CHECK (kind IN ('phone', 'bsuid')),
    erased_at     TEXT NOT NULL,
    -- The ledger event that records the erasure (it holds no personal data).
    event_id      INTEGER NOT NULL,
    lifted_by     INTEGER,
    lifted_at     TEXT
) STRICT, WITHOUT ROWID;

-- The messages sent to people since erased, as SHA-256 of the message id: a status
-- the provider sends later for one (a `read` days after) is not recorded, and its raw
-- body not kept, so it cannot bring the number back.
CREATE TABLE erased_messages (
    message_sha256 TEXT PRIMARY KEY NOT NULL
) STRICT, WITHOUT ROWID;

-- One row: HMAC(key, "wacampaign suppression key check"), so a different key is
-- noticed instead of silently matching nobody.
CREATE TABLE suppression_key_check (
    id    INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    check_hmac TEXT NOT NULL
) STRICT;

-- What `prune` folded away: per campaign, how many journal rows ended in each state,
-- and how many statuses and replies were removed, so `status` keeps its counts.
CREATE TABLE pruned_counts (
    campaign_id TEXT NOT NULL,
    -- journal:<state>, status:<status>, best:<status>, replies
    what        TEXT NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, what)
) STRICT, WITHOUT ROWID;
