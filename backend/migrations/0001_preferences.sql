-- Notification preferences: one row per user who ever changed them (a user without a row
-- has the documented defaults, ETag "0"). `document` is the full normalised preferences
-- document as JSON text; `version` is the ETag, +1 on every change; `updated_at` is in Unix
-- microseconds.
CREATE TABLE IF NOT EXISTS notification_preferences (
    user_id TEXT PRIMARY KEY,
    document TEXT NOT NULL,
    version BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
