-- The report read model.
CREATE TABLE IF NOT EXISTS reports
(
    id           uuid PRIMARY KEY,
    version      bigint      NOT NULL,
    kind         text        NOT NULL,
    status       text        NOT NULL,
    team_id      text        NOT NULL,
    period_from  timestamptz NOT NULL,
    period_to    timestamptz NOT NULL,
    requested_by text        NOT NULL,
    attempts     integer     NOT NULL,
    result       jsonb,
    error        text,
    requested_at timestamptz NOT NULL,
    completed_at timestamptz,
    updated_at   timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS reports_team_idx ON reports (team_id, id);
CREATE INDEX IF NOT EXISTS reports_status_idx ON reports (status, id);
