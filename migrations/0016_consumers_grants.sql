-- The consumers' tables (0015) for the application's role (0012: nothing is granted by default) and
-- their functions with a pinned search_path (0009: a temp object must never stand in for a table).
-- Read models and bookkeeping, not money: the app inserts and updates them; the guards of 0015
-- (offsets forward only, versions never down, fee + net = gross) hold for pay_app as for anyone.
-- No DELETE or TRUNCATE: a replay builds a new generation and swaps, it never erases the old one.
GRANT SELECT, INSERT, UPDATE ON processed_events, consumer_payment_versions, consumer_offsets,
  dead_letter_events, settlement_projection, settlement_projection_event_counts,
  settlement_projection_live TO pay_app;

ALTER FUNCTION consumer_payment_versions_monotonic() SET search_path = pg_catalog, public, pg_temp;
ALTER FUNCTION consumer_offsets_forward_only() SET search_path = pg_catalog, public, pg_temp;
GRANT USAGE ON SEQUENCE dead_letter_events_id_seq TO pay_app;
