-- Outbox rows the broker or producer refuses for good (too large, invalid, not authorised)
-- are parked after a few attempts: they and the later rows of their aggregate wait for an
-- operator (`retryParkedEvents`) while every other aggregate keeps flowing.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS parked_at timestamptz;

-- The relay asks, for every row it reads, whether an earlier row of the same aggregate is
-- parked; partial, so it holds only parked rows (usually none) and the question costs nothing.
CREATE INDEX IF NOT EXISTS outbox_parked_idx ON outbox (topic, key, id)
    WHERE parked_at IS NOT NULL AND published_at IS NULL;
