-- Reconciliation explains what is in flight (2026-12-05): a settlement or a refund committed with its
-- outbox event, not yet applied by the projection's consumer, made every run under steady traffic
-- report a difference (the gauge stayed above 0, and ReconciliationDifferences paged with nothing
-- wrong). The comparison now adds those events' amounts, read from the outbox, to the projection's;
-- the consumers' role reads the outbox for that (read only: it never writes it).
GRANT SELECT ON outbox_events TO pay_consumer;
