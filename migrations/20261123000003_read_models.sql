-- Read models: plain tables shaped for the queries. Each row keeps the version it reflects.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE IF NOT EXISTS tasks
(
    id           uuid PRIMARY KEY,
    version      bigint      NOT NULL,
    title        text        NOT NULL,
    description  text        NOT NULL,
    status       text        NOT NULL,
    team_id      text        NOT NULL,
    creator_id   text        NOT NULL,
    assignee_id  text,
    priority     text        NOT NULL,
    due_at       timestamptz,
    labels       text[]      NOT NULL,
    result       text,
    error        text,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    started_at   timestamptz,
    finished_at  timestamptz
);

-- Keyset pagination is by id (UUIDv7: creation order); each filter leads an index with id.
CREATE INDEX IF NOT EXISTS tasks_team_idx ON tasks (team_id, id);
CREATE INDEX IF NOT EXISTS tasks_team_status_idx ON tasks (team_id, status, id);
CREATE INDEX IF NOT EXISTS tasks_assignee_idx ON tasks (assignee_id, id);
CREATE INDEX IF NOT EXISTS tasks_labels_idx ON tasks USING gin (labels);
CREATE INDEX IF NOT EXISTS tasks_text_idx ON tasks USING gin ((title || ' ' || description) gin_trgm_ops);

-- Events a projection could not apply; visible to operators and retryable.
CREATE TABLE IF NOT EXISTS projection_failures
(
    id          bigserial PRIMARY KEY,
    projection  text        NOT NULL,
    event_id    uuid        NOT NULL,
    reason      text        NOT NULL,
    event       jsonb       NOT NULL,
    failed_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (projection, event_id)
);
