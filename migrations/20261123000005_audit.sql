-- The audit trail reads the event store directly; these indexes serve its filters, each
-- ending in `position` so a filtered page is an index range scan in trail order.
-- (By aggregate, the primary key (aggregate_type, aggregate_id, sequence) already serves:
-- within one aggregate, sequence order is position order.)
CREATE INDEX IF NOT EXISTS events_correlation_idx ON events ((metadata ->> 'correlation_id'), position);
CREATE INDEX IF NOT EXISTS events_actor_idx ON events ((metadata ->> 'actor_id'), position);
CREATE INDEX IF NOT EXISTS events_type_idx ON events (event_type, position);
CREATE INDEX IF NOT EXISTS events_recorded_idx ON events (recorded_at);

-- The transaction that wrote each event. The trail shows an event once every transaction
-- older than it has ended, so a page never skips an event that commits after a later one.
ALTER TABLE events ADD COLUMN IF NOT EXISTS transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id();
