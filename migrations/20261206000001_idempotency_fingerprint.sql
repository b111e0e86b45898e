-- The fingerprint of the request first made under an idempotency key (SHA-256, hex), so a
-- key reused for a different request is refused instead of answering the first result.
-- Rows recorded before have none, and match any retry of the same command and target.
ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS request_fingerprint text;
