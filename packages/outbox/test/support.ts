import { Effect } from "effect"
import { SqlClient } from "effect/sql"

/**
 * `count` unpublished outbox rows of the tests' own aggregate (`test_aggregate`: events of the
 * `payment` aggregate need their payment, 0095), ids `pay_<tag>_<n>`, inserted by the owner in one
 * statement (a backlog without the writer's per-row work).
 */
export const insertTestRows = (tag: string, count: number) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`
      INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, event_version, payload, headers)
      SELECT gen_random_uuid(), 'test_aggregate', ${`pay_${tag}_`} || n, 'payment_created', 1, '{}'::jsonb, '{}'::jsonb
      FROM generate_series(1, ${count}::int) AS n`
  })
