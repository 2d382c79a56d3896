-- Planning a campaign reads every event of a purpose in (subject_key, occurred_at, id)
-- order, and needs only these columns. With all of them in the index, the read is
-- one pass over the index instead of a lookup into the table per event, in whatever
-- order people happened to sign up: for a million events, 6.5 s became 1.1 s. It
-- serves `consent show` (one subject_key) as well, so it replaces the old index.
--
-- The last column must stay the same expression as HAS_EVIDENCE in
-- src/consent/ledger.rs, or SQLite cannot read it from the index.
CREATE INDEX consent_events_standing ON consent_events (
    subject_key,
    occurred_at,
    id,
    purpose,
    action,
    method,
    recorded_via,
    (source <> '' OR coalesce(evidence, '') <> '' OR notice_hash IS NOT NULL)
);

DROP INDEX consent_events_by_subject;
