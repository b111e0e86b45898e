-- The team owning each event's aggregate, so the audit trail can be scoped to a caller's
-- teams without folding streams. A task or report belongs to the team named at its creation
-- for its whole life; the service writes the column with every append.
ALTER TABLE events ADD COLUMN IF NOT EXISTS team_id text;

-- Events written before this column existed: the team of their stream's creation event.
UPDATE events AS e
SET team_id = created.team_id
FROM (
    SELECT aggregate_type, aggregate_id,
           coalesce(payload -> 'TaskCreated' ->> 'teamId',
                    payload -> 'ReportRequested' ->> 'teamId') AS team_id
    FROM events
    WHERE sequence = 1
) AS created
WHERE e.team_id IS NULL
  AND e.aggregate_type = created.aggregate_type
  AND e.aggregate_id = created.aggregate_id;

-- A scoped trail page is an index range scan per team, in trail order.
CREATE INDEX IF NOT EXISTS events_team_idx ON events (team_id, position);
