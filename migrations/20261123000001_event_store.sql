-- The event store: postgres-es's tables and column names, extended for Chronicle.
-- postgres-es's own repository can still read these tables (json -> jsonb is compatible).

CREATE TABLE IF NOT EXISTS events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        jsonb                        NOT NULL,
    metadata       jsonb                        NOT NULL,
    -- Chronicle's extensions
    position       bigserial                    NOT NULL,
    event_id       uuid                         NOT NULL,
    recorded_at    timestamptz                  NOT NULL DEFAULT clock_timestamp(),
    hash           text                         NOT NULL,
    previous_hash  text                         NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE UNIQUE INDEX IF NOT EXISTS events_position_idx ON events (position);
CREATE UNIQUE INDEX IF NOT EXISTS events_event_id_idx ON events (event_id);

CREATE TABLE IF NOT EXISTS snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          jsonb                                NOT NULL,
    timestamp        timestamptz                          NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

-- Retried mutations answer their first result: one row per (actor, key).
CREATE TABLE IF NOT EXISTS idempotency_keys
(
    actor_id     text        NOT NULL,
    key          text        NOT NULL,
    command      text        NOT NULL,
    aggregate_id text        NOT NULL,
    version      bigint      NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (actor_id, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_created_idx ON idempotency_keys (created_at);
