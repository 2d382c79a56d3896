-- What the webhook server records: every signed delivery (so a retried payload is
-- processed once), the delivery statuses of sent messages, the messages people sent
-- us (their customer-service windows), and numbers that changed.

-- One row per distinct signed request body. Providers retry for days and send
-- duplicates: a body whose SHA-256 is here and processed is answered, not reprocessed.
CREATE TABLE webhook_deliveries (
    body_sha256  TEXT PRIMARY KEY NOT NULL,
    -- meta or twilio
    provider     TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    -- The raw body as signed (a JSON document or a form); may be pruned to NULL
    -- once old, the hash staying for deduplication.
    body         BLOB,
    -- Set when its effects were recorded; NULL with `error` set when they could
    -- not be, so the provider's retry tries again.
    processed_at TEXT,
    error        TEXT
) STRICT;

CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (received_at);

-- The delivery history of each message: sent, delivered, read, failed (Meta) or
-- Twilio's queued ... undelivered. A status is recorded once per (message, status,
-- provider timestamp); Twilio sends no timestamp, so its `timestamp` is 0 and each
-- status of a message is recorded once.
CREATE TABLE message_statuses (
    id           INTEGER PRIMARY KEY NOT NULL,
    -- The wamid or the Twilio message SID.
    message_id   TEXT NOT NULL,
    status       TEXT NOT NULL,
    -- How far along the message is: 0 queued, 1 sent, 2 delivered, 3 read,
    -- 4 failed; the highest is a message's latest status.
    rank         INTEGER NOT NULL,
    -- The provider's Unix timestamp (0 when it sends none).
    timestamp    INTEGER NOT NULL,
    -- When it happened (the provider's time, else when it was received), RFC 3339.
    occurred_at  TEXT NOT NULL,
    provider     TEXT NOT NULL,
    recipient    TEXT,
    error_code   INTEGER,
    error_detail TEXT,
    -- The journal row it was matched to, if any.
    campaign_id  TEXT,
    contact_key  INTEGER,
    received_at  TEXT NOT NULL,
    UNIQUE (message_id, status, timestamp)
) STRICT;

CREATE INDEX message_statuses_by_row ON message_statuses (campaign_id, contact_key)
    WHERE campaign_id IS NOT NULL;

-- Messages people sent us (no text is kept here; an opt-out's text is the ledger's
-- evidence). The latest per number opens WhatsApp's 24-hour customer-service window.
CREATE TABLE inbound_messages (
    message_id  TEXT PRIMARY KEY NOT NULL,
    provider    TEXT NOT NULL,
    -- The sender in E.164, and its consent key (the same for every spelling
    -- WhatsApp produces of one number).
    phone       TEXT NOT NULL,
    consent_key INTEGER NOT NULL,
    -- text, button, interactive, image, ... as the provider names it.
    kind        TEXT NOT NULL,
    -- The message it replies to, when the person used WhatsApp's reply.
    context_id  TEXT,
    -- When the person sent it (the provider's time, else when it was received).
    occurred_at TEXT NOT NULL,
    received_at TEXT NOT NULL
) STRICT;

CREATE INDEX inbound_messages_by_sender ON inbound_messages (consent_key, occurred_at);
CREATE INDEX inbound_messages_by_time ON inbound_messages (occurred_at);

-- A person moved from one number to another (WhatsApp's user_changed_number).
CREATE TABLE number_links (
    old_phone       TEXT NOT NULL,
    old_consent_key INTEGER NOT NULL,
    new_phone       TEXT NOT NULL,
    new_consent_key INTEGER NOT NULL,
    changed_at      TEXT NOT NULL,
    -- The system message that told us.
    message_id      TEXT NOT NULL,
    provider        TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    PRIMARY KEY (old_consent_key, new_consent_key)
) STRICT, WITHOUT ROWID;

CREATE INDEX number_links_by_new ON number_links (new_consent_key);
