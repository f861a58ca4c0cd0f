import { KafkaProducer, KafkaAdmin, defaultKafkaProducerLimits, defaultKafkaAdminTimeouts, postgresLayer } from "@pay/infra"
import { Effect, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { OutboxStore, toEventRecord } from "./src/index.ts"

const url = `postgres://postgres@127.0.0.1:5432/pay_outbox_explain`
const topic = "examples.prof.payments.events"
const t = () => performance.now()
const program = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const store = yield* OutboxStore
  const producer = yield* KafkaProducer
  yield* sql`DELETE FROM outbox_events`
  yield* sql`INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, event_version, payload, headers)
SELECT gen_random_uuid(), 'payment', 'pay_backlog_' || n, 'payment_created', 1,
 jsonb_build_object('type','payment_created','payment_id','pay_backlog_'||n,'amount_minor',1999), '{}'::jsonb
FROM generate_series(1, 20000) n`
  const totals = { begin: 0, claim: 0, send: 0, mark: 0, commit: 0, rawsend: 0 }
  const N = 30
  for (let i = 0; i < N; i++) {
    const t0 = t()
    let t1 = 0, t2 = 0, t4 = 0, t5 = 0
    let recs: Array<any> = []
    yield* sql.withTransaction(Effect.gen(function* () {
      t1 = t()
      const rows = yield* store.claim(200)
      t2 = t()
      recs = rows.map(toEventRecord).map((r) => ({ topic, ...r }))
      yield* producer.send(recs)
      t4 = t()
      yield* store.markPublished(rows.map((r) => r.id))
      t5 = t()
    }))
    const t6 = t()
    yield* producer.send(recs)
    const t7 = t()
    totals.begin += t1 - t0; totals.claim += t2 - t1; totals.send += t4 - t2; totals.mark += t5 - t4; totals.commit += t6 - t5; totals.rawsend += t7 - t6
  }
  console.log(JSON.stringify(Object.fromEntries(Object.entries(totals).map(([k, v]) => [k, Number((v / N).toFixed(1))]))))
})
await Effect.runPromise(Effect.scoped(program).pipe(Effect.provide(Layer.mergeAll(OutboxStore.layer).pipe(Layer.provideMerge(postgresLayer({ url: Redacted.make(url), maxConnections: 4 })), Layer.provideMerge(Layer.mergeAll(KafkaProducer.layerWith({ brokers: "127.0.0.1:9092", clientId: "prof", ...defaultKafkaProducerLimits }), KafkaAdmin.layerWith({ brokers: "127.0.0.1:9092", clientId: "prof2", ...defaultKafkaAdminTimeouts })))))))
