-- A slice's bookkeeping in ONE round trip (issue 14: throughput; docs/consumers.md). Before, a
-- partition slice's transaction sent nine statements (lock the offset row, read the processed ids,
-- lock the versions, insert the claims, move the versions, the handler's upserts, store the offset)
-- and each round trip, not the work, was the cost. This function does the consumer's own part of
-- the slice, in the caller's transaction, with exactly the per-record rules of RecordProcessor.ts
-- (which stays the fallback: a slice that fails is rolled back and handled one record at a time):
--
--   1. lock the partition's offset row (created at 0): two instances that briefly both hold a
--      partition during a rebalance take turns; every later statement here sees what the first
--      one committed (plpgsql takes a new snapshot per statement in READ COMMITTED);
--   2. a record below the stored offset is "behind" (handled before): nothing;
--   3. lock the payments' version rows (FOR UPDATE, key order);
--   4. decide each record in offset order: an event id processed before, or earlier in the slice,
--      is a "duplicate"; a version not above the payment's (stored, or of an earlier record of the
--      slice) is "stale"; else "applied";
--   5. insert processed_events (applied and stale) and move the versions (applied): every row must
--      be written (ON CONFLICT would hide a concurrent writer — a re-drive — so a shortfall raises
--      and the caller's transaction rolls back whole);
--   6. store the next offset past the last record handled and add the counts.
--
-- The caller then applies the handler's effects for the "applied" records and commits; nothing
-- here is visible before that COMMIT. p_records: a JSON array of {i, o, e, p, v} = position in the
-- slice (1..n, offset order), offset, event id (ce_id), payment id, payment version.
-- Returns the outcome of each record, by position.
CREATE FUNCTION consumer_claim_slice(p_consumer text, p_topic text, p_partition int, p_records jsonb)
RETURNS text[] LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  v_next bigint;
  v_count int;
  v_outcomes text[];
  v_expected int;
  v_written int;
  v_last bigint;
BEGIN
  IF jsonb_typeof(p_records) IS DISTINCT FROM 'array' THEN
    RAISE EXCEPTION 'consumer_claim_slice: p_records must be a JSON array' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  v_count := jsonb_array_length(p_records);
  IF v_count = 0 OR v_count > 1000 THEN
    RAISE EXCEPTION 'consumer_claim_slice: % records (1..1000 per slice)', v_count USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF (SELECT count(*) FROM jsonb_to_recordset(p_records) AS r(i int, o bigint)
      WHERE r.i IS NULL OR r.o IS NULL OR r.i NOT BETWEEN 1 AND v_count) > 0
     OR (SELECT count(DISTINCT r.i) FROM jsonb_to_recordset(p_records) AS r(i int)) <> v_count THEN
    RAISE EXCEPTION 'consumer_claim_slice: positions must be 1..% once each, offsets present', v_count USING ERRCODE = 'invalid_parameter_value';
  END IF;

  INSERT INTO consumer_offsets (consumer, topic, partition, next_offset) VALUES (p_consumer, p_topic, p_partition, 0)
  ON CONFLICT (consumer, topic, partition) DO UPDATE SET next_offset = consumer_offsets.next_offset
  RETURNING next_offset INTO v_next;

  PERFORM 1 FROM consumer_payment_versions
  WHERE consumer = p_consumer
    AND payment_id IN (SELECT r.p FROM jsonb_to_recordset(p_records) AS r(o bigint, p text) WHERE r.o >= v_next)
  ORDER BY payment_id FOR UPDATE;

  WITH input AS (
    SELECT r.i, r.o, r.e, r.p, r.v FROM jsonb_to_recordset(p_records) AS r(i int, o bigint, e uuid, p text, v int)
  ), ahead AS (
    SELECT a.*,
           row_number() OVER (PARTITION BY a.e ORDER BY a.i) > 1
             OR EXISTS (SELECT 1 FROM processed_events pe WHERE pe.consumer = p_consumer AND pe.event_id = a.e) AS duplicate
    FROM input a WHERE a.o >= v_next
  ), decided AS (
    SELECT d.i,
           CASE
             WHEN d.duplicate THEN 'duplicate'
             WHEN d.v <= greatest(
               coalesce((SELECT c.version FROM consumer_payment_versions c WHERE c.consumer = p_consumer AND c.payment_id = d.p), 0),
               coalesce(max(d.v) FILTER (WHERE NOT d.duplicate)
                          OVER (PARTITION BY d.p ORDER BY d.i ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
             ) THEN 'stale'
             ELSE 'applied'
           END AS outcome
    FROM ahead d
  )
  SELECT array_agg(coalesce(decided.outcome, 'behind') ORDER BY input.i) INTO v_outcomes
  FROM input LEFT JOIN decided ON decided.i = input.i;

  SELECT count(*) FILTER (WHERE outcome IN ('applied', 'stale')) INTO v_expected FROM unnest(v_outcomes) AS outcome;
  IF v_expected > 0 THEN
    INSERT INTO processed_events (consumer, event_id, payment_id, payment_version, outcome, topic, partition, "offset")
    SELECT p_consumer, r.e, r.p, r.v, v_outcomes[r.i], p_topic, p_partition, r.o
    FROM jsonb_to_recordset(p_records) AS r(i int, o bigint, e uuid, p text, v int)
    WHERE v_outcomes[r.i] IN ('applied', 'stale')
    ORDER BY r.i
    ON CONFLICT (consumer, event_id) DO NOTHING;
    GET DIAGNOSTICS v_written = ROW_COUNT;
    IF v_written <> v_expected THEN
      RAISE EXCEPTION 'consumer_claim_slice: % event(s) claimed meanwhile', v_expected - v_written USING ERRCODE = 'serialization_failure';
    END IF;

    SELECT count(DISTINCT r.p) INTO v_expected FROM jsonb_to_recordset(p_records) AS r(i int, p text) WHERE v_outcomes[r.i] = 'applied';
    INSERT INTO consumer_payment_versions (consumer, payment_id, version)
    SELECT p_consumer, r.p, max(r.v) FROM jsonb_to_recordset(p_records) AS r(i int, p text, v int)
    WHERE v_outcomes[r.i] = 'applied'
    GROUP BY r.p ORDER BY r.p
    ON CONFLICT (consumer, payment_id) DO UPDATE SET version = EXCLUDED.version
      WHERE consumer_payment_versions.version < EXCLUDED.version;
    GET DIAGNOSTICS v_written = ROW_COUNT;
    IF v_written <> v_expected THEN
      RAISE EXCEPTION 'consumer_claim_slice: a payment''s version moved meanwhile' USING ERRCODE = 'serialization_failure';
    END IF;
  END IF;

  SELECT max(r.o) INTO v_last FROM jsonb_to_recordset(p_records) AS r(i int, o bigint) WHERE v_outcomes[r.i] <> 'behind';
  IF v_last IS NOT NULL THEN
    UPDATE consumer_offsets SET next_offset = greatest(next_offset, v_last + 1), updated_at = now(),
      applied_count = applied_count + (SELECT count(*) FROM unnest(v_outcomes) AS x WHERE x = 'applied'),
      duplicate_count = duplicate_count + (SELECT count(*) FROM unnest(v_outcomes) AS x WHERE x = 'duplicate'),
      stale_count = stale_count + (SELECT count(*) FROM unnest(v_outcomes) AS x WHERE x = 'stale')
    WHERE consumer = p_consumer AND topic = p_topic AND partition = p_partition;
  END IF;
  RETURN v_outcomes;
END $$;
