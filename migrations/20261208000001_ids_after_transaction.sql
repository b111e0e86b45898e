-- Event positions and outbox ids are taken after the writing transaction has its id.
--
-- Readers that follow the store in id order past rows already seen (the audit tree, the
-- relay) must not skip a row whose transaction took a lower id and committed later. They wait
-- until the oldest transaction still running (`pg_snapshot_xmin`) is younger than every
-- transaction that could hold such an id. That holds only if a transaction's id comes before
-- the ids it takes: with a plain `nextval` default a writer could take position 10, lose the
-- CPU, and get its transaction id after another writer took 11, got its transaction id and
-- committed. Asking for the transaction id first (it is given out once and then only read)
-- closes that window for every writer, whatever statement it uses. Both sequences keep
-- CACHE 1, so ids are handed out in the order they are asked for across sessions.
ALTER TABLE events ALTER COLUMN position SET DEFAULT
    (CASE WHEN pg_current_xact_id() IS NULL THEN NULL
          ELSE nextval('events_position_seq'::regclass) END);
ALTER TABLE outbox ALTER COLUMN id SET DEFAULT
    (CASE WHEN pg_current_xact_id() IS NULL THEN NULL
          ELSE nextval('outbox_id_seq'::regclass) END);
