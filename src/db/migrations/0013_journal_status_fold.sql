-- Each message's delivery statuses folded onto its journal row as they arrive, so
-- `report` and `status` read one row per message instead of searching
-- `message_statuses` for each (a million messages with three million statuses took
-- most of the report's time). `message_statuses` stays the full history; these
-- columns always equal what its rows of the row's `message_id` say. The backfill of
-- existing rows runs right after this file, in the same transaction (journal::fold).

-- The furthest the message got: the highest `message_statuses.rank` of its statuses
-- (0 queued, 1 sent, 2 delivered, 3 read, 4 failed). NULL: no status yet.
ALTER TABLE journal ADD COLUMN status_rank INTEGER;
-- When it was first reported delivered, and first read: Unix seconds (the
-- provider's timestamp, else when the status was received).
ALTER TABLE journal ADD COLUMN delivered_ts INTEGER;
ALTER TABLE journal ADD COLUMN read_ts INTEGER;
-- The first failed (or undelivered) status's error, when it failed after acceptance.
ALTER TABLE journal ADD COLUMN status_error_code INTEGER;
ALTER TABLE journal ADD COLUMN status_error_detail TEXT;
-- Meta's `pricing` object of the latest status that carried one: what it bills.
ALTER TABLE journal ADD COLUMN billable INTEGER;
ALTER TABLE journal ADD COLUMN pricing_category TEXT;
ALTER TABLE journal ADD COLUMN pricing_type TEXT;

-- Billing is read from the journal now: the index that found each message's latest
-- priced status (0012) would only cost every priced status an index write.
DROP INDEX IF EXISTS message_statuses_billing;
