-- Frequency caps count each person's accepted messages across campaigns: by time
-- for the plan (one scan of the cap's window), by person for the moment of sending,
-- where messages another campaign has in flight count too.
CREATE INDEX journal_accepted_by_time ON journal (outcome_at, person_id, campaign_id)
    WHERE state = 'accepted';
CREATE INDEX journal_sent_by_person ON journal (person_id, outcome_at)
    WHERE state IN ('accepted', 'in_flight');

-- The contact's time zone when the contacts file gives one (campaign.timezone_column),
-- so quiet hours are checked again at the moment of sending without the file.
ALTER TABLE journal ADD COLUMN time_zone TEXT;
