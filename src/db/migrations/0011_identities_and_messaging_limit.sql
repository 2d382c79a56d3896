-- Identities linked, the portfolio messaging limit, and the sending number's account.

-- Links change as webhooks and contacts files teach them: `changed` orders the
-- changes, so a running campaign applies those made since its last claim instead of
-- reloading every link. A BSUID's own consent events are kept under its own key (a
-- negative number derived from the BSUID, src/identity.rs), whoever it is linked to.
ALTER TABLE identities ADD COLUMN changed INTEGER NOT NULL DEFAULT 0;
CREATE INDEX identities_by_change ON identities (changed);

-- Meta's messaging limit counts unique people reached outside a customer-service
-- window in a rolling 24 hours. One row per person, with the last time a campaign
-- in this database reached them: written in the transaction that claims the send,
-- so two campaigns running at once count each other's sends before their own.
CREATE TABLE limit_reach (
    person_id   INTEGER PRIMARY KEY NOT NULL,
    reached_at  TEXT NOT NULL,
    campaign_id TEXT NOT NULL
) STRICT;

CREATE INDEX limit_reach_by_time ON limit_reach (reached_at);

-- What the Cloud API last said about a sending phone number (`wacampaign account`).
CREATE TABLE phone_accounts (
    -- cloud_api:<phone_number_id>
    account_key     TEXT PRIMARY KEY NOT NULL,
    display_phone   TEXT,
    verified_name   TEXT,
    quality_rating  TEXT,
    name_status     TEXT,
    throughput      TEXT,
    -- Unique people per rolling 24 hours; NULL when the answer did not say, -1 for
    -- unlimited.
    messaging_limit INTEGER,
    -- The field it came from: whatsapp_business_manager_messaging_limit, or the
    -- deprecated messaging_limit_tier.
    limit_source    TEXT,
    fetched_at      TEXT NOT NULL,
    -- The answer as received, for `account --json` and for support.
    answer          TEXT NOT NULL
) STRICT;
