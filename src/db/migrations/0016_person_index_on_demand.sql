-- The caps' person index is built when a campaign with a frequency cap first
-- sends (journal::hold::ensure_person_index), no longer for every journal.
--
-- People are keyed by number, so the accepted rows of one batch land on as many
-- pages of this index as the batch has messages: a fifth to a third of every page
-- the send path writes (BENCHMARKS.md, "The caps' index on demand"). Only the check
-- a cap makes at the moment of sending reads it; a database whose campaigns set no
-- cap never needs it. Once built it stays, and every send keeps it, as a cap
-- counts the messages of every campaign.
DROP INDEX IF EXISTS journal_accepted_by_person;
