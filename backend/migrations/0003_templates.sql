-- Notification templates. One row per key; soft deletion keeps the row (and its versions)
-- so a deleted key's history continues if the key is created again.
CREATE TABLE IF NOT EXISTS notification_templates (
    key TEXT PRIMARY KEY,
    category TEXT NOT NULL,
    channel TEXT NOT NULL,
    current_version BIGINT NOT NULL,
    deleted_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE INDEX IF NOT EXISTS notification_templates_category
    ON notification_templates (category);

-- Every version ever made, never rewritten. `content` is JSON:
-- {"category", "default_locale", "variables": [...], "locales": {"<locale>": {...}}}.
-- `summary` says what made the version (created, updated, restored from version N…).
CREATE TABLE IF NOT EXISTS notification_template_versions (
    key TEXT NOT NULL,
    version BIGINT NOT NULL,
    content TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    summary TEXT NOT NULL,
    PRIMARY KEY (key, version)
);
