-- Reports: one row per report; the owner is the caller who created it. Times are Unix
-- microseconds; the payload is JSON text (at most 256 KiB, checked by the service).
CREATE TABLE IF NOT EXISTS reports (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    title TEXT NOT NULL,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    payload TEXT NOT NULL,
    error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- A user's list, in (created_at, id) order: the keyset pagination of `GET /api/reports`.
CREATE INDEX IF NOT EXISTS reports_owner_created ON reports (owner_id, created_at, id);

-- An admin's list of everyone's reports, in the same order.
CREATE INDEX IF NOT EXISTS reports_created ON reports (created_at, id);
