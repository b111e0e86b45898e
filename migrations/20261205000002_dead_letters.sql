-- What consumer groups set aside, kept where operators list them, send them back to their
-- group (redrive) or discard them. The Kafka dead-letter topic gets each one too.
CREATE TABLE IF NOT EXISTS dead_letters
(
    id                 bigserial PRIMARY KEY,
    consumer_group     text        NOT NULL,
    original_topic     text        NOT NULL,
    original_partition integer     NOT NULL,
    original_offset    bigint      NOT NULL,
    key                bytea,
    -- The message's headers in order: names, and values (null for a header without one).
    header_names       text[]      NOT NULL,
    header_values      bytea[]     NOT NULL,
    payload            bytea,
    reason             text        NOT NULL,
    attempts           integer     NOT NULL,
    dead_lettered_at   timestamptz NOT NULL DEFAULT now(),
    redriven_at        timestamptz,
    redriven_by        text,
    discarded_at       timestamptz,
    discarded_by       text,
    -- A redelivery after a crash between this insert and the offset commit finds its entry.
    UNIQUE (consumer_group, original_topic, original_partition, original_offset)
);

-- The list operators page through: a group's entries not discarded, in id order.
CREATE INDEX IF NOT EXISTS dead_letters_listed_idx ON dead_letters (consumer_group, id)
    WHERE discarded_at IS NULL;
