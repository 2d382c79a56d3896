-- The contact's own columns as the plan read them (a JSON object, header → cell;
-- all columns, or those the campaign's `keep_columns` lists), so a follow-up list
-- (`status --only not-read --csv`) and the report's breakdowns (`report --by city`)
-- see the row that was messaged, even after a recurring campaign's file changed.
-- NULL for rows planned before this column existed.
ALTER TABLE journal ADD COLUMN contact TEXT;

-- The latest plan's figures (contacts read, eligible, excluded by reason, by
-- language) as JSON, written when `send` plans: the report's funnel shows who was
-- left out without reading the contacts file again.
ALTER TABLE campaigns ADD COLUMN plan_stats TEXT;

-- Each message's latest status with pricing, for `status`'s billing and the report:
-- the latest id per message is read from this index alone, then one row per message.
CREATE INDEX message_statuses_billing ON message_statuses (campaign_id, message_id, id)
    WHERE billable IS NOT NULL OR pricing_category IS NOT NULL;
