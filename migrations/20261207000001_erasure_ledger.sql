-- The erasure ledger (docs/privacy.md, "Values stored in clear"). Sealed values are erased by
-- destroying a key and change no stored byte; values stored in clear (events written before
-- sealing was on, or with it off, and reports' results) can only be erased by replacing them
-- with the marker `erased:<pseudonym>` in the stored event. Each such replacement is a row
-- here: the event's content hash before (`prior_hash`, its `hash` column for the first) and
-- after (`redacted_hash`). The erasure's `DataSubjectErased` event commits to every row of its
-- pseudonym with a digest, signed under the checkpoint key, so `chronicle audit verify` tells
-- an erased event from an edited one, and a row written without that event is tampering.
--
-- `pending_payload`/`pending_metadata` hold the redacted content only between the plan and
-- its application, in the same erasure (or its re-run after a crash): the erasure event must
-- be stored before any event changes.
CREATE TABLE IF NOT EXISTS erased_events
(
    event_id         uuid        NOT NULL,
    pseudonym        text        NOT NULL,
    prior_hash       text        NOT NULL,
    redacted_hash    text        NOT NULL,
    pending_payload  jsonb,
    pending_metadata jsonb,
    planned_at       timestamptz NOT NULL DEFAULT now(),
    applied_at       timestamptz,
    PRIMARY KEY (event_id, pseudonym)
);
CREATE INDEX IF NOT EXISTS erased_events_pseudonym_idx ON erased_events (pseudonym);
