-- The synced message templates: each sync (or import) of an account's templates is
-- one row of template_syncs with every template it read; the current cache of an
-- account is its latest complete sync. A sync is written in one transaction after
-- its last page arrived, so a sync that fails halfway leaves the previous one whole.

CREATE TABLE template_syncs (
    id        INTEGER PRIMARY KEY NOT NULL,
    -- Whose templates: `waba:<WhatsApp Business Account ID>`, `simulator:<file>`.
    account   TEXT NOT NULL,
    -- Where they were read from: an API URL (without credentials) or a file.
    origin    TEXT NOT NULL,
    -- When, UTC, RFC 3339, to the second.
    synced_at TEXT NOT NULL
) STRICT;

CREATE INDEX template_syncs_by_account ON template_syncs (account, id);

CREATE TABLE templates (
    sync_id          INTEGER NOT NULL REFERENCES template_syncs (id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    -- As Meta spells it (es_MX); matched case- and separator-insensitively.
    language         TEXT NOT NULL,
    template_id      TEXT,
    status           TEXT NOT NULL,
    category         TEXT NOT NULL,
    quality          TEXT,
    parameter_format TEXT,
    -- The `components` array exactly as the account answered it (JSON).
    components       TEXT NOT NULL,
    PRIMARY KEY (sync_id, name, language)
) STRICT;

-- Quick-reply payloads a campaign declared as opt-outs (`opt_out = true` on its
-- button): a tap on one is recorded as an opt-out by the webhook server, whichever
-- campaign sent it.
CREATE TABLE opt_out_payloads (
    payload     TEXT PRIMARY KEY NOT NULL,
    campaign_id TEXT NOT NULL,
    recorded_at TEXT NOT NULL
) STRICT;

-- The approved text each campaign was sent with, per language: when Meta approves a
-- new text between two runs, the run shows both and goes on only with
-- --accept-template-change, recorded here (accepted_change = 1).
CREATE TABLE campaign_template_texts (
    id              INTEGER PRIMARY KEY NOT NULL,
    campaign_id     TEXT NOT NULL,
    language        TEXT NOT NULL,
    text            TEXT NOT NULL,
    recorded_at     TEXT NOT NULL,
    accepted_change INTEGER NOT NULL DEFAULT 0 CHECK (accepted_change IN (0, 1))
) STRICT;

CREATE INDEX campaign_template_texts_by_campaign
    ON campaign_template_texts (campaign_id, language, id);
