-- INSERT OR REPLACE (and REPLACE, and an UPSERT's insert half) removes the row it
-- collides with before inserting its own, and SQLite fires no DELETE trigger for
-- that hidden delete unless recursive_triggers is on: the append-only triggers of
-- 0001 let `REPLACE INTO consent_events ...` edit an event in place. These refuse an
-- insert that would collide with an existing row on any unique key, before the
-- conflict clause is ever consulted.

-- consent_events has two unique keys: id (the rowid) and dedupe_key. The ledger
-- itself never collides (it reads the last id and looks the dedupe key up first, in
-- one IMMEDIATE transaction), so any collision is an edit. A NULL dedupe_key
-- collides with nothing, as in the UNIQUE constraint.
CREATE TRIGGER consent_events_append_only_insert BEFORE INSERT ON consent_events
WHEN EXISTS (SELECT 1 FROM consent_events WHERE id = NEW.id)
  OR EXISTS (SELECT 1 FROM consent_events WHERE dedupe_key = NEW.dedupe_key)
BEGIN
    SELECT RAISE(ABORT, 'consent_events is append-only: an insert may not replace an event; record a new event instead');
END;

-- consent_notices is keyed by the SHA-256 of its text, and the ledger stores a notice
-- with INSERT OR IGNORE each time it is cited: the same text again is skipped, as
-- before (RAISE(IGNORE) leaves the stored row, recorded_at included, as it was).
-- Different text under an existing hash can only be an edit.
CREATE TRIGGER consent_notices_append_only_insert BEFORE INSERT ON consent_notices
WHEN EXISTS (SELECT 1 FROM consent_notices WHERE hash = NEW.hash)
BEGIN
    SELECT CASE
        WHEN (SELECT text FROM consent_notices WHERE hash = NEW.hash) IS NEW.text
            THEN RAISE(IGNORE)
        ELSE RAISE(ABORT, 'consent_notices is append-only: a notice may not be replaced')
    END;
END;
