-- The caps' index of accepted rows by time, like their indexes by person (0016,
-- 0017), is built when a campaign with a frequency cap first sends
-- (journal::hold::ensure_cap_indexes), no longer for every journal.
--
-- Only a capped campaign's plan reads it (one scan of the cap's window). Every
-- accepted message enters it, a fifth of the pages a send writes and 7% of the
-- journal writer's instructions for sends that no cap ever reads (BENCHMARKS.md).
-- Without it, `check` and `preview` of a capped campaign read the journal end to
-- end instead: the same rows, found more slowly, and nothing written.
DROP INDEX IF EXISTS journal_accepted_by_time;
