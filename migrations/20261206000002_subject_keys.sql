-- The keys personal data is sealed under, one per data subject (docs/privacy.md). Erasing a
-- subject deletes its row: what was sealed under the key can no longer be read, and no stored
-- event changes. Apart from `events`, so a key can go while every event, hash and proof stays.
CREATE TABLE IF NOT EXISTS subject_keys
(
    subject_id text        PRIMARY KEY,
    pseudonym  text        NOT NULL UNIQUE,
    data_key   bytea       NOT NULL CHECK (length(data_key) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
