-- The Merkle tree over every event in store order, and its signed checkpoints
-- (application::audit::merkle, docs/audit.md).

-- The tree takes an event only once its transaction (`events.transaction_id`) is older than
-- the oldest one still running, so no event with a lower position can still appear behind it
-- (positions are taken at insert, not at commit).

-- Leaves in tree order: leaf `index` is the event at `position`.
CREATE TABLE IF NOT EXISTS audit_leaves
(
    index    bigint PRIMARY KEY,
    position bigint NOT NULL UNIQUE,
    hash     bytea  NOT NULL
);

-- Every complete, aligned subtree above the leaves: level L, index i covers leaves
-- [i * 2^L, (i + 1) * 2^L). Proofs at any size read O(log^2 n) of them.
CREATE TABLE IF NOT EXISTS audit_nodes
(
    level smallint NOT NULL,
    index bigint   NOT NULL,
    hash  bytea    NOT NULL,
    PRIMARY KEY (level, index)
);

-- Signed checkpoints. The signing key is never here, and each checkpoint is also published to
-- Kafka ({prefix}chronicle.audit.checkpoints), a copy database access cannot rewrite.
CREATE TABLE IF NOT EXISTS audit_checkpoints
(
    tree_size    bigint PRIMARY KEY,
    root_hash    bytea       NOT NULL,
    issued_at    timestamptz NOT NULL,
    key_id       text        NOT NULL,
    signature    bytea       NOT NULL,
    published_at timestamptz
);
