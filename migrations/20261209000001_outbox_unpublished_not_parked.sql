-- The relay's work queue leaves parked rows out, so that no question about parked rows can be
-- answered from it.
--
-- The relay's read asks, for every row it reads, whether an earlier row of the same aggregate
-- is parked, and which parked row comes first. Both questions carry `published_at IS NULL`,
-- which the old queue's predicate implied, so the planner could answer them by walking the
-- whole queue and filtering on `parked_at`. It did, whenever the tables had last been analysed
-- with an empty queue (the steady state: every row published): both indexes then looked
-- equally empty. Under a burst the queue grew to tens of thousands of rows, each read walked
-- it once per row read (a read took 3-11 s), and the backlog fed itself
-- (docs/performance.md, "The relay's read and a backlog that fed itself"). Parked rows are
-- rare, and the relay never reads them: with this predicate only `outbox_parked_idx` can
-- answer the parked questions, whatever the statistics say.
CREATE INDEX IF NOT EXISTS outbox_queue_idx ON outbox (id)
    WHERE published_at IS NULL AND parked_at IS NULL;
DROP INDEX IF EXISTS outbox_unpublished_idx;
