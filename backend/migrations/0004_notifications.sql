-- Notifications and their delivery. Times are Unix microseconds; ids are UUID text.
--
-- `notifications`: one row per accepted `POST /api/notifications`.
CREATE TABLE IF NOT EXISTS notifications (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    template_key TEXT NOT NULL,
    category TEXT NOT NULL,
    -- The locale asked for (the user's) and the one each channel's template rendered is on
    -- the delivery rows.
    locale TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE INDEX IF NOT EXISTS notifications_user ON notifications (user_id, created_at);

-- Idempotency keys, per caller: the fingerprint (SHA-256) of the request that used the key,
-- the notification it made and the answer it got (JSON), replayed as it was. A key is
-- honoured for 24 h; older rows are replaced.
CREATE TABLE IF NOT EXISTS notification_idempotency (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    notification_id TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);

-- The outbox: one row per notification and channel, written in the same transaction as the
-- notification. Workers claim due rows (`queued` and `not_before` passed, or `sending`
-- with an expired lease), lease them, and move them to `sent` or `failed`, or back to
-- `queued` with a later `not_before` (backoff, a provider's rate-limit reset).
-- `provider_index` is the position in the channel's provider list being tried and
-- `provider_tries` the attempts made on it.
CREATE TABLE IF NOT EXISTS notification_deliveries (
    id TEXT PRIMARY KEY,
    notification_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    template_key TEXT,
    template_version BIGINT,
    locale_used TEXT,
    recipient TEXT,
    message TEXT,
    not_before BIGINT NOT NULL,
    expires_at BIGINT,
    provider_index BIGINT NOT NULL,
    provider_tries BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    provider TEXT,
    provider_message_id TEXT,
    sandbox BIGINT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    sent_at BIGINT
);

CREATE INDEX IF NOT EXISTS notification_deliveries_due
    ON notification_deliveries (status, not_before);
CREATE INDEX IF NOT EXISTS notification_deliveries_notification
    ON notification_deliveries (notification_id);

-- Every attempt to hand a delivery to a provider, written (outcome `started`) and committed
-- before the provider is called, then completed with the outcome. An attempt left
-- `started` by a worker that died is marked `abandoned` when its delivery is claimed again.
CREATE TABLE IF NOT EXISTS notification_attempts (
    delivery_id TEXT NOT NULL,
    number BIGINT NOT NULL,
    provider TEXT NOT NULL,
    worker TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    outcome TEXT NOT NULL,
    status BIGINT,
    code TEXT,
    error TEXT,
    provider_message_id TEXT,
    PRIMARY KEY (delivery_id, number)
);
