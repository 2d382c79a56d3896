-- A run claims planned rows by moving one mark on its campaign, not by writing
-- `in_flight` on every row (journal::claims): the planned rows of the marked plan
-- run at or before the mark, in send order (seq, then id), are in flight. Their
-- outcome is their one row update. A run that starts turns a mark a killed run
-- left into `in_flight` rows before anything else, and clears it.
--
-- The claim's UPDATE was about a third of the journal writer's instructions per
-- message (BENCHMARKS.md, "Claims by mark").
ALTER TABLE campaigns ADD COLUMN claimed_run INTEGER;
ALTER TABLE campaigns ADD COLUMN claimed_seq INTEGER;
ALTER TABLE campaigns ADD COLUMN claimed_id INTEGER;
-- When the latest claim under the mark was made durable: the intent time of the
-- rows a killed run leaves under it.
ALTER TABLE campaigns ADD COLUMN claimed_at TEXT;
