-- The relay's read: up to $1 unpublished rows above the floor $3 and not in flight ($2), in id
-- order, with the marks of the statement's own snapshot (the one its rows were read under).
-- The payload travels as Postgres's own JSON text: parsing it into a tree and printing it
-- again only to send the bytes cost a quarter of the drain rate. The headers come as text too,
-- read straight into their pairs rather than through a JSON tree.
--
-- Whatever the statistics say, the read costs what it returns, not what the table or the
-- backlog holds: the queue comes from `outbox_queue_idx`, which holds only unpublished rows
-- that are not parked, and the questions about parked rows (is an earlier row of this
-- aggregate parked, which parked row comes first) can only be answered from
-- `outbox_parked_idx`, which holds nothing else. The first parked row is taken from the parked
-- rows as a set (`OFFSET 0`), not by walking `outbox_pkey` in id order until one turns up.
-- Both wrong ways were taken by the planner under statistics from another moment and made a
-- backlog feed itself (docs/performance.md, "The relay's read and a backlog that fed itself");
-- an end-to-end test reads this file and holds the read, planned for its values and planned
-- for any values, to a bound in buffers. So it is prepared once per connection like most
-- statements: planning it at every call cost Postgres more than running it.
-- Checked at compile time (`query_file_as!` in outbox/pipeline.rs).
SELECT id, topic, key, headers::text AS "headers!", payload::text AS "payload!",
       extract(epoch FROM clock_timestamp() - created_at)::float8 AS "waited!",
       marks.oldest_running AS "oldest_running!", marks.top AS "top!",
       marks.first_parked
FROM outbox,
     (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS oldest_running,
             (SELECT coalesce(max(id), 0) FROM outbox) AS top,
             (SELECT min(id) FROM (SELECT id FROM outbox
                                   WHERE parked_at IS NOT NULL AND published_at IS NULL
                                   OFFSET 0) AS held) AS first_parked
     ) AS marks
WHERE id > $3 AND published_at IS NULL AND parked_at IS NULL AND id <> ALL($2)
  AND NOT EXISTS (
      SELECT 1 FROM outbox parked
      WHERE parked.parked_at IS NOT NULL AND parked.published_at IS NULL
        AND parked.topic = outbox.topic AND parked.key = outbox.key
        AND parked.id < outbox.id)
ORDER BY id LIMIT $1
