-- Event positions and outbox ids are taken after the writing transaction has its id.
--
-- Readers that follow the store in number order past rows already seen (the audit tree, the
-- relay's floor) must not skip a row whose transaction took a lower number and committed
-- later. They wait until every transaction that could hold such a number has ended, proved by
-- a transaction id given out after their read (infrastructure/src/settling.rs). That proof
-- holds only if each transaction has its id before it takes a number: with a plain `nextval`
-- default a writer could take position 10, lose the CPU, and get its transaction id after the
-- reader's. Asking for the transaction id first (given out once, then only read) closes that
-- window for every writer, whatever statement it uses. CACHE 1 keeps numbers handed out in
-- the order they are asked for across sessions.
ALTER TABLE events ALTER COLUMN position SET DEFAULT
    (CASE WHEN pg_current_xact_id() IS NULL THEN NULL
          ELSE nextval('events_position_seq'::regclass) END);
ALTER TABLE outbox ALTER COLUMN id SET DEFAULT
    (CASE WHEN pg_current_xact_id() IS NULL THEN NULL
          ELSE nextval('outbox_id_seq'::regclass) END);
ALTER SEQUENCE events_position_seq CACHE 1;
ALTER SEQUENCE outbox_id_seq CACHE 1;
