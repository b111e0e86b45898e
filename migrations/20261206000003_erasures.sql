-- Erasures of data subjects (docs/privacy.md). A row is written before the subject's key is
-- destroyed and completed (`scrubbed_at`) once the copies in clear were rewritten, so an
-- erasure interrupted at any point is finished by running it again.
--
-- The subject's id is never stored: `subject_tag` is a keyed hash of it, so a second request
-- for the same id finds the first erasure's answer. The key lives in `privacy_tag_key`, beside
-- the data: whoever can read the database can test a guessed id against it (docs/privacy.md).
CREATE TABLE IF NOT EXISTS privacy_tag_key
(
    id      boolean PRIMARY KEY DEFAULT true CHECK (id),
    tag_key bytea   NOT NULL CHECK (length(tag_key) >= 32)
);
INSERT INTO privacy_tag_key (tag_key)
VALUES (decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'))
ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS erasures
(
    pseudonym   text        PRIMARY KEY,
    subject_tag bytea       NOT NULL,
    erased_at   timestamptz NOT NULL DEFAULT now(),
    erased_by   text        NOT NULL,
    reason      text        NOT NULL,
    streams     bigint      NOT NULL DEFAULT 0,
    scrubbed_at timestamptz
);
CREATE INDEX IF NOT EXISTS erasures_subject_tag_idx ON erasures (subject_tag, erased_at DESC);
