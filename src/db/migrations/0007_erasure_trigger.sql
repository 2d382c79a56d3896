-- consent_events stays append-only, with one exception: erasing a re-anchored event's
-- personal fields (subject, subject_key, source, evidence, dedupe_key, salt), keeping
-- everything its hash covers, the commitment included.
CREATE TRIGGER consent_events_append_only_update BEFORE UPDATE ON consent_events
WHEN NOT (
        OLD.format = 2 AND NEW.format = 2
    AND NEW.subject = '' AND NEW.subject_key = 0 AND NEW.source = ''
    AND NEW.evidence IS NULL AND NEW.dedupe_key IS NULL AND NEW.salt IS NULL
    AND NEW.id IS OLD.id AND NEW.purpose IS OLD.purpose AND NEW.action IS OLD.action
    AND NEW.occurred_at IS OLD.occurred_at AND NEW.recorded_at IS OLD.recorded_at
    AND NEW.method IS OLD.method AND NEW.recorded_via IS OLD.recorded_via
    AND NEW.notice_hash IS OLD.notice_hash AND NEW.actor IS OLD.actor
    AND NEW.prev_hash IS OLD.prev_hash AND NEW.hash IS OLD.hash
    AND NEW.commitment IS OLD.commitment)
BEGIN
    SELECT RAISE(ABORT, 'consent_events is append-only: record a new event instead (only `wacampaign erase` may blank an event''s personal fields)');
END;

-- New events are written in the erasable form only.
CREATE TRIGGER consent_events_erasable_only BEFORE INSERT ON consent_events
WHEN NEW.format IS NOT 2 OR NEW.commitment IS NULL
BEGIN
    SELECT RAISE(ABORT, 'consent_events is append-only and takes only format-2 events (a commitment to the personal fields)');
END;
