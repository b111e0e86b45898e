-- Each read model's lifecycle: which code version built it, whether its live consumer may write
-- (only while LIVE), how far it got in the event store, and a rebuild's claim and progress.
CREATE TABLE IF NOT EXISTS projections
(
    name                 text PRIMARY KEY,
    -- The projection code's version that built the rows (a newer code version rebuilds).
    version              integer     NOT NULL,
    state                text        NOT NULL DEFAULT 'LIVE'
        CHECK (state IN ('LIVE', 'REBUILDING', 'PAUSED')),
    -- Highest event-store position reflected in the rows.
    position             bigint      NOT NULL DEFAULT 0,
    -- The running rebuild's claim and progress. The claim itself is an advisory lock held by
    -- the rebuild's connection: when that is gone, the live consumer takes the projection back.
    rebuild_id           uuid,
    rebuild_done         bigint      NOT NULL DEFAULT 0,
    rebuild_total        bigint      NOT NULL DEFAULT 0,
    rebuild_started_at   timestamptz,
    -- The last finished rebuild.
    last_rebuild_events  bigint,
    last_rebuild_seconds double precision,
    last_rebuild_at      timestamptz,
    last_error           text,
    updated_at           timestamptz NOT NULL DEFAULT now()
);

-- The read models that exist when this migration runs were built by version 1 of their code.
INSERT INTO projections (name, version)
VALUES ('tasks', 1), ('reports', 1)
ON CONFLICT (name) DO NOTHING;
