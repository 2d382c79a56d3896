-- The departure log a campaign's latest run writes (departure_log.rs): a random
-- number the log's header repeats, so the next run trusts that log only if it is
-- the one the latest run wrote. NULL: the latest run wrote none (a library caller),
-- and any log beside the database is stale.
ALTER TABLE campaigns ADD COLUMN departure_log INTEGER;
