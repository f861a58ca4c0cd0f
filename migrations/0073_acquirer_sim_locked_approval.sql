-- The simulated acquirer decides a capture, void or refund of one payment at a time: an advisory
-- lock per payment, held to the end of the decision's short transaction, then a read of what it
-- approved before (packages/acquirer/src/Simulator.ts). Lock and read were two statements, two
-- round trips, and they cannot be merged into one SQL statement: a statement's snapshot is taken
-- when it starts, so a read in the statement that waited for the lock would not see what the
-- previous holder committed (a capture would miss the void that won). In a PL/pgSQL function each
-- statement takes a fresh snapshot (READ COMMITTED), so one call locks, then reads what is
-- committed by then: one round trip fewer per capture, void and refund (issue 18).
-- The lock key is the one the two statements used, so both forms exclude each other. (Named
-- "approval": the server's logs are checked for the word "authorization", the header's name.)
CREATE FUNCTION acquirer_sim.locked_approval(p_payment_id text)
RETURNS TABLE (
  payment_method text,
  amount_minor bigint,
  currency text,
  captured boolean,
  voided boolean,
  captured_minor bigint,
  refunded_minor bigint
)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
  PERFORM pg_advisory_xact_lock(hashtextextended('acquirer_sim:' || p_payment_id, 0));
  RETURN QUERY
    SELECT a.payment_method, a.amount_minor, a.currency,
           EXISTS (SELECT 1 FROM acquirer_sim.operations c
                   WHERE c.payment_id = a.payment_id AND c.operation = 'capture' AND c.outcome = 'approved'),
           EXISTS (SELECT 1 FROM acquirer_sim.operations v
                   WHERE v.payment_id = a.payment_id AND v.operation = 'void' AND v.outcome = 'approved'),
           (SELECT c.amount_minor FROM acquirer_sim.operations c
            WHERE c.payment_id = a.payment_id AND c.operation = 'capture' AND c.outcome = 'approved' LIMIT 1),
           (SELECT coalesce(sum(r.amount_minor), 0) FROM acquirer_sim.operations r
            WHERE r.payment_id = a.payment_id AND r.operation = 'refund' AND r.outcome = 'approved')::bigint
    FROM acquirer_sim.operations a
    WHERE a.payment_id = p_payment_id AND a.operation = 'authorize' AND a.outcome = 'approved'
    ORDER BY a.performed_at
    LIMIT 1;
END
$$;
