-- The whole append in one statement: events, outbox rows, snapshot, idempotency key. The
-- `guard` writes nothing unless every key the events were sealed under still exists ($24):
-- an erasure that destroyed one while this process held it in its cache wins, and the
-- command is decided again under the keys as they are now. Checked at compile time
-- (`query_file!` in event_store.rs).
WITH guard AS (
    SELECT (SELECT count(*) FROM subject_keys WHERE pseudonym = ANY($24::text[]))
           = cardinality($24::text[]) AS keys_live
), new_events AS (
    INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                        payload, metadata, event_id, recorded_at, hash, previous_hash, team_id)
    SELECT $1, $2, e.sequence, e.event_type, e.event_version, e.payload, e.metadata,
           e.event_id, e.recorded_at, e.hash, e.previous_hash, $22
    FROM UNNEST($3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[], $8::uuid[],
                $9::timestamptz[], $10::text[], $11::text[])
         AS e(sequence, event_type, event_version, payload, metadata, event_id, recorded_at,
              hash, previous_hash)
    WHERE (SELECT keys_live FROM guard)
    ORDER BY e.sequence
    RETURNING 1
), new_outbox AS (
    INSERT INTO outbox (event_id, topic, key, headers, payload)
    SELECT o.event_id, o.topic, $2, o.headers, o.payload
    FROM UNNEST($8::uuid[], $12::text[], $13::jsonb[], $14::jsonb[])
         WITH ORDINALITY AS o(event_id, topic, headers, payload, n)
    WHERE (SELECT keys_live FROM guard)
    ORDER BY o.n
    RETURNING 1
), new_snapshot AS (
    INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload)
    SELECT $1, $2, $15, $16, $17 WHERE $15::bigint IS NOT NULL AND (SELECT keys_live FROM guard)
    RETURNING 1
), old_snapshots AS (
    DELETE FROM snapshots
    WHERE $15::bigint IS NOT NULL AND aggregate_type = $1 AND aggregate_id = $2
      AND last_sequence < $15 AND (SELECT keys_live FROM guard)
    RETURNING 1
), new_key AS (
    INSERT INTO idempotency_keys (actor_id, key, command, aggregate_id, version,
                                  request_fingerprint)
    SELECT $18, $19, $20, $2, $21, $23 WHERE $19::text IS NOT NULL AND (SELECT keys_live FROM guard)
    RETURNING 1
)
SELECT (SELECT keys_live FROM guard) AS keys_live,
       (SELECT count(*) FROM new_events) AS events,
       (SELECT count(*) FROM new_outbox) AS outbox,
       (SELECT count(*) FROM new_snapshot) + (SELECT count(*) FROM old_snapshots)
         + (SELECT count(*) FROM new_key) AS other
