-- Several commands' appends in one statement and one transaction (group commit). Each command
-- is judged on its own before anything is written, and only those judged `ok` write their
-- events, outbox rows, snapshot and idempotency key, all or nothing per command:
--   erased     a key its events were sealed under was destroyed (as append.sql's guard);
--   conflict   its first sequence is taken: another writer won the race for that version;
--   key_taken  its idempotency key was recorded by an earlier request.
-- A command racing a transaction not yet committed (another batch, another instance) is not
-- seen by these checks: its insert then fails the whole statement on the unique key, and the
-- caller appends each command of the group alone, which judges it exactly. Commands of one
-- aggregate, or with one idempotency key, are never grouped together. Checked at compile time
-- (`query_file!` in event_store/group_commit.rs).
WITH command AS (
    SELECT *
    FROM UNNEST($1::int[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[],
                $7::jsonb[], $8::text[], $9::text[], $10::text[], $11::bigint[], $12::text[])
         AS c(n, aggregate_type, aggregate_id, team_id, first_sequence, snapshot_sequence,
              snapshot_payload, key_actor, key, key_command, key_version, key_fingerprint)
), verdict AS (
    SELECT c.*,
           CASE
               WHEN EXISTS (
                   SELECT 1 FROM UNNEST($28::int[], $29::text[]) AS s(n, pseudonym)
                   WHERE s.n = c.n
                     AND NOT EXISTS (SELECT 1 FROM subject_keys k WHERE k.pseudonym = s.pseudonym))
                   THEN 'erased'
               WHEN EXISTS (
                   SELECT 1 FROM events e
                   WHERE e.aggregate_type = c.aggregate_type AND e.aggregate_id = c.aggregate_id
                     AND e.sequence = c.first_sequence)
                   THEN 'conflict'
               WHEN c.key IS NOT NULL AND EXISTS (
                   SELECT 1 FROM idempotency_keys i WHERE i.actor_id = c.key_actor AND i.key = c.key)
                   THEN 'key_taken'
               ELSE 'ok'
           END AS outcome
    FROM command c
), new_events AS (
    INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                        payload, metadata, event_id, recorded_at, hash, previous_hash, team_id)
    SELECT v.aggregate_type, v.aggregate_id, e.sequence, e.event_type, e.event_version,
           e.payload, e.metadata, e.event_id, e.recorded_at, e.hash, e.previous_hash, v.team_id
    FROM UNNEST($13::int[], $14::bigint[], $15::text[], $16::text[], $17::jsonb[], $18::jsonb[],
                $19::uuid[], $20::timestamptz[], $21::text[], $22::text[])
         WITH ORDINALITY AS e(n, sequence, event_type, event_version, payload, metadata,
                              event_id, recorded_at, hash, previous_hash, place)
    JOIN verdict v ON v.n = e.n AND v.outcome = 'ok'
    ORDER BY e.place
    RETURNING 1
), new_outbox AS (
    INSERT INTO outbox (event_id, topic, key, headers, payload)
    SELECT o.event_id, o.topic, v.aggregate_id, o.headers, o.payload
    FROM UNNEST($23::int[], $24::uuid[], $25::text[], $26::jsonb[], $27::jsonb[])
         WITH ORDINALITY AS o(n, event_id, topic, headers, payload, place)
    JOIN verdict v ON v.n = o.n AND v.outcome = 'ok'
    ORDER BY o.place
    RETURNING 1
), new_snapshots AS (
    INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload)
    SELECT v.aggregate_type, v.aggregate_id, v.snapshot_sequence, v.snapshot_sequence,
           v.snapshot_payload
    FROM verdict v
    WHERE v.outcome = 'ok' AND v.snapshot_sequence IS NOT NULL
    RETURNING 1
), old_snapshots AS (
    DELETE FROM snapshots s
    USING verdict v
    WHERE v.outcome = 'ok' AND v.snapshot_sequence IS NOT NULL
      AND s.aggregate_type = v.aggregate_type AND s.aggregate_id = v.aggregate_id
      AND s.last_sequence < v.snapshot_sequence
    RETURNING 1
), new_keys AS (
    INSERT INTO idempotency_keys (actor_id, key, command, aggregate_id, version,
                                  request_fingerprint)
    SELECT v.key_actor, v.key, v.key_command, v.aggregate_id, v.key_version, v.key_fingerprint
    FROM verdict v
    WHERE v.outcome = 'ok' AND v.key IS NOT NULL
    RETURNING 1
)
-- Data-modifying CTEs run whether or not the answer reads them.
SELECT v.n AS "n!", v.outcome AS "outcome!"
FROM verdict v
ORDER BY v.n
