-- Void (issue 19): a merchant cancels an AUTHORIZED payment; the acquirer releases the reservation
-- and the payment becomes CANCELED, a terminal status. No money moves, so no ledger rule changes.
-- The code's table (packages/domain/src/PaymentStateMachine.ts, rule `cancel`) and this one are
-- compared by packages/payments/test/PaymentTriggers.test.ts.
--
--   * CANCELED joins the status CHECKs of payments, payment_status_history and the transition table;
--   * the pair AUTHORIZED -> CANCELED joins payment_transitions (whose immutability trigger is
--     disabled for this reviewed change only, as 0003 prescribes);
--   * the event check (0010) needs nothing: a history row to CANCELED requires `payment_canceled`;
--   * the acquirer simulator records a third operation, `void` (our reference `payment:<id>:void`),
--     and two decline codes: a capture after a void (`authorization_voided`) and a void after a
--     capture (`authorization_captured`) are declined, so that only one of them is ever approved.
-- Errors: SQLSTATE 23000 (integrity_constraint_violation), like 0003.

ALTER TABLE payment_transitions DROP CONSTRAINT payment_transitions_from_status_check;
ALTER TABLE payment_transitions DROP CONSTRAINT payment_transitions_to_status_check;
ALTER TABLE payment_transitions ADD CONSTRAINT payment_transitions_from_status_check
  CHECK (from_status IN ('CREATED', 'AUTHORIZED', 'SETTLED', 'FAILED', 'CANCELED'));
ALTER TABLE payment_transitions ADD CONSTRAINT payment_transitions_to_status_check
  CHECK (to_status IN ('CREATED', 'AUTHORIZED', 'SETTLED', 'FAILED', 'CANCELED'));

ALTER TABLE payment_transitions DISABLE TRIGGER payment_transitions_immutable;
INSERT INTO payment_transitions (from_status, to_status) VALUES
  ('AUTHORIZED', 'CANCELED');  -- cancel (void)
ALTER TABLE payment_transitions ENABLE TRIGGER payment_transitions_immutable;

ALTER TABLE payments DROP CONSTRAINT payments_status_check;
ALTER TABLE payments ADD CONSTRAINT payments_status_check
  CHECK (status IN ('CREATED', 'AUTHORIZED', 'SETTLED', 'FAILED', 'CANCELED'));

ALTER TABLE payment_status_history DROP CONSTRAINT payment_status_history_to_status_check;
ALTER TABLE payment_status_history ADD CONSTRAINT payment_status_history_to_status_check
  CHECK (to_status IN ('CREATED', 'AUTHORIZED', 'SETTLED', 'FAILED', 'CANCELED'));

ALTER TABLE acquirer_sim.operations DROP CONSTRAINT operations_operation_check;
ALTER TABLE acquirer_sim.operations ADD CONSTRAINT operations_operation_check
  CHECK (operation IN ('authorize', 'capture', 'void'));

ALTER TABLE acquirer_sim.operations DROP CONSTRAINT operations_decline_code_check;
ALTER TABLE acquirer_sim.operations ADD CONSTRAINT operations_decline_code_check
  CHECK (decline_code IN ('card_declined', 'insufficient_funds', 'authorization_voided', 'authorization_captured'));
