-- Fewer pages written per message on the send path.
--
-- `person_id` is a number's consent key: one person's rows lie nowhere near the
-- rows claimed with them, so every index led by it writes one page per row, a 4 KiB
-- WAL frame, at every commit. 0010's person index held accepted and in-flight rows,
-- so each message moved in it twice: inserted at the claim, moved again when its
-- outcome set outcome_at. Accepted rows are now indexed apart, entered once, when
-- the message is accepted; rows in flight get their own index, which only ever holds
-- the few rows in flight (a page or two however large the journal), so the claim and
-- the outcome write the same few pages for a whole batch.
DROP INDEX journal_sent_by_person;
CREATE INDEX journal_accepted_by_person ON journal (person_id, outcome_at)
    WHERE state = 'accepted';
CREATE INDEX journal_in_flight_by_person ON journal (person_id)
    WHERE state = 'in_flight';
