-- consumer_claim_slice (0071) again, its processed_events claims as a plain INSERT first
-- (issue 14: Postgres's CPU per consumed event). ON CONFLICT DO NOTHING pays a speculative
-- insertion per row (a pre-check of the unique index, then the insertion confirmed); a slice
-- rarely holds an id already claimed (a publisher's re-send, a re-drive), so the function inserts
-- the slice's claims plainly and, only when one of them is already there (unique_violation), rolls
-- that INSERT back (the block's own subtransaction) and claims them with ON CONFLICT DO NOTHING as
-- before. Every outcome, lock and row is 0071's (packages/consumers/test/slice-claims.test.ts).
CREATE OR REPLACE FUNCTION consumer_claim_slice(p_consumer text, p_topic text, p_partition int, p_records jsonb)
RETURNS text[] LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  v_count int;
  v_o bigint[];
  v_e uuid[];
  v_p text[];
  v_v int[];
  v_bad int;
  v_next bigint;
  v_claimed uuid[];
  v_stored_p text[];
  v_stored_v int[];
  v_outcomes text[];
  v_last bigint;
BEGIN
  IF jsonb_typeof(p_records) IS DISTINCT FROM 'array' THEN
    RAISE EXCEPTION 'consumer_claim_slice: p_records must be a JSON array' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  v_count := jsonb_array_length(p_records);
  IF v_count = 0 OR v_count > 1000 THEN
    RAISE EXCEPTION 'consumer_claim_slice: % records (1..1000 per slice)', v_count USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- Read once, in the array's order; every field present, offsets strictly increasing.
  SELECT array_agg(r.o ORDER BY r.n), array_agg(r.e ORDER BY r.n), array_agg(r.p ORDER BY r.n), array_agg(r.v ORDER BY r.n),
         count(*) FILTER (WHERE r.o IS NULL OR r.e IS NULL OR r.p IS NULL OR r.v IS NULL OR r.o <= r.previous)
    INTO v_o, v_e, v_p, v_v, v_bad
  FROM (SELECT x.*, lag(x.o) OVER (ORDER BY x.n) AS previous
        FROM ROWS FROM (jsonb_to_recordset(p_records) AS (o bigint, e uuid, p text, v int)) WITH ORDINALITY AS x(o, e, p, v, n)) r;
  IF v_bad > 0 THEN
    RAISE EXCEPTION 'consumer_claim_slice: % record(s) without o/e/p/v or out of offset order', v_bad USING ERRCODE = 'invalid_parameter_value';
  END IF;

  INSERT INTO consumer_offsets (consumer, topic, partition, next_offset) VALUES (p_consumer, p_topic, p_partition, 0)
  ON CONFLICT (consumer, topic, partition) DO UPDATE SET next_offset = consumer_offsets.next_offset
  RETURNING next_offset INTO v_next;

  -- One primary-key probe per payment of the slice, in key order (the lateral reference makes
  -- it a nested loop whatever the statistics say): the rows locked and read never depend on
  -- how many payments the consumer has seen.
  SELECT array_agg(l.payment_id), array_agg(l.version) INTO v_stored_p, v_stored_v
  FROM (SELECT DISTINCT q.p FROM unnest(v_p) AS q(p) ORDER BY q.p) k
  CROSS JOIN LATERAL (SELECT c.payment_id, c.version FROM consumer_payment_versions c
                      WHERE c.consumer = p_consumer AND c.payment_id = k.p FOR UPDATE) l;

  -- The version rule first, for the first copy of each id in the slice. A record processed
  -- before (found by the insert below) has a version at most its payment's stored one (it was
  -- applied, moving it, or stale under it), so counting it in the running maximum changes nothing.
  WITH input AS (
    SELECT u.o, u.e, u.p, u.v, u.i FROM unnest(v_o, v_e, v_p, v_v) WITH ORDINALITY AS u(o, e, p, v, i)
  ), stored AS (
    SELECT s.p, s.version FROM unnest(v_stored_p, v_stored_v) AS s(p, version)
  ), ahead AS (
    SELECT a.i, a.e, a.p, a.v, row_number() OVER (PARTITION BY a.e ORDER BY a.i) > 1 AS repeated
    FROM input a WHERE a.o >= v_next
  ), decided AS (
    SELECT d.i,
           CASE
             WHEN d.repeated THEN 'duplicate'
             WHEN d.v <= greatest(
               coalesce(st.version, 0),
               coalesce(max(d.v) OVER (PARTITION BY d.p ORDER BY d.i ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
             ) THEN 'stale'
             ELSE 'applied'
           END AS outcome
    FROM ahead d LEFT JOIN stored st ON st.p = d.p
  )
  SELECT array_agg(coalesce(decided.outcome, 'behind') ORDER BY input.i) INTO v_outcomes
  FROM input LEFT JOIN decided ON decided.i = input.i;

  -- The claims: an id already in processed_events (this consumer handled it before, or a
  -- re-drive did, meanwhile: the insert waits for it) is a duplicate, exactly as the per-record
  -- claim decides; it writes nothing.
  -- A plain INSERT first: with no id there yet (the rule: re-sends and re-drives are rare) it
  -- claims them all without ON CONFLICT's speculative insertion per row. An id already there (or
  -- committed meanwhile by a re-drive: the insert waits for it) raises unique_violation: the
  -- block's subtransaction rolls that INSERT back and the ON CONFLICT form claims the others.
  BEGIN
    WITH claimed AS (
      INSERT INTO processed_events (consumer, event_id, payment_id, payment_version, outcome, topic, partition, "offset")
      SELECT p_consumer, u.e, u.p, u.v, v_outcomes[u.i], p_topic, p_partition, u.o
      FROM unnest(v_o, v_e, v_p, v_v) WITH ORDINALITY AS u(o, e, p, v, i)
      WHERE v_outcomes[u.i] IN ('applied', 'stale')
      RETURNING event_id
    )
    SELECT array_agg(claimed.event_id) INTO v_claimed FROM claimed;
  EXCEPTION WHEN unique_violation THEN
    WITH claimed AS (
      INSERT INTO processed_events (consumer, event_id, payment_id, payment_version, outcome, topic, partition, "offset")
      SELECT p_consumer, u.e, u.p, u.v, v_outcomes[u.i], p_topic, p_partition, u.o
      FROM unnest(v_o, v_e, v_p, v_v) WITH ORDINALITY AS u(o, e, p, v, i)
      WHERE v_outcomes[u.i] IN ('applied', 'stale')
      ON CONFLICT (consumer, event_id) DO NOTHING
      RETURNING event_id
    )
    SELECT array_agg(claimed.event_id) INTO v_claimed FROM claimed;
  END;
  SELECT array_agg(CASE WHEN u.outcome IN ('applied', 'stale') AND c.e IS NULL THEN 'duplicate' ELSE u.outcome END
                   ORDER BY u.i)
    INTO v_outcomes
  FROM unnest(v_e, v_outcomes) WITH ORDINALITY AS u(e, outcome, i)
  LEFT JOIN (SELECT DISTINCT x.e FROM unnest(v_claimed) AS x(e)) c ON c.e = u.e;

  WITH moved AS (
    SELECT u.p, max(u.v) AS v FROM unnest(v_p, v_v, v_outcomes) AS u(p, v, outcome)
    WHERE u.outcome = 'applied' GROUP BY u.p
  ), written AS (
    INSERT INTO consumer_payment_versions (consumer, payment_id, version)
    SELECT p_consumer, moved.p, moved.v FROM moved ORDER BY moved.p
    ON CONFLICT (consumer, payment_id) DO UPDATE SET version = EXCLUDED.version
      WHERE consumer_payment_versions.version < EXCLUDED.version
    RETURNING 1
  )
  SELECT (SELECT count(*) FROM moved) - (SELECT count(*) FROM written) INTO v_bad;
  IF v_bad <> 0 THEN
    -- Read under the lock a moment before: only a writer outside this protocol gets here.
    RAISE EXCEPTION 'consumer_claim_slice: a payment''s version moved meanwhile' USING ERRCODE = 'serialization_failure';
  END IF;

  SELECT max(u.o) INTO v_last FROM unnest(v_o, v_outcomes) AS u(o, outcome) WHERE u.outcome <> 'behind';
  IF v_last IS NOT NULL THEN
    UPDATE consumer_offsets SET next_offset = greatest(next_offset, v_last + 1), updated_at = now(),
      applied_count = applied_count + c.applied, duplicate_count = duplicate_count + c.duplicate, stale_count = stale_count + c.stale
    FROM (SELECT count(*) FILTER (WHERE x = 'applied') AS applied, count(*) FILTER (WHERE x = 'duplicate') AS duplicate,
                 count(*) FILTER (WHERE x = 'stale') AS stale FROM unnest(v_outcomes) AS x) c
    WHERE consumer = p_consumer AND topic = p_topic AND partition = p_partition;
  END IF;
  RETURN v_outcomes;
END $$;
