import { KafkaProducer, KafkaAdmin, defaultKafkaProducerLimits, defaultKafkaAdminTimeouts, postgresLayer } from "@pay/infra"
import { Effect, Fiber, Layer, Metric, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { OutboxPublisher, OutboxStore, defaultPublisherOptions, outboxCommitToAck } from "./src/index.ts"

const url = `postgres://postgres@127.0.0.1:5432/pay_outbox_explain`
const topic = "examples.prof.payments.events"
const program = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const fill = Effect.gen(function* () {
    yield* sql`DELETE FROM outbox_events`
    yield* sql`INSERT INTO outbox_events (id, aggregate_type, aggregate_id, event_type, event_version, payload, headers)
SELECT gen_random_uuid(), 'payment', 'pay_backlog_' || n, 'payment_created', 1,
 jsonb_build_object('type','payment_created','payment_id','pay_backlog_'||n,'amount_minor',1999), '{}'::jsonb
FROM generate_series(1, 10000) n`
  })
  const pub = yield* OutboxPublisher.make({ ...defaultPublisherOptions, topic, workers: 1 })
  yield* fill
  let t0 = performance.now()
  for (let i = 0; i < 50; i++) yield* pub.publishBatch
  console.log("publishBatch loop: ms/batch", ((performance.now() - t0) / 50).toFixed(1))
  yield* fill
  const before = (yield* pub.status).publishedCount
  t0 = performance.now()
  const f = yield* Effect.forkChild(pub.run)
  while ((yield* pub.status).publishedCount - before < 10000) yield* Effect.sleep("5 millis")
  console.log("run: ms/batch", ((performance.now() - t0) / 50).toFixed(1))
  yield* Fiber.interrupt(f)
  t0 = performance.now()
  for (let i = 0; i < 200 * 50; i++) yield* Metric.update(outboxCommitToAck, i % 300)
  console.log("200 histogram updates: ms", ((performance.now() - t0) / 50).toFixed(2))
})
await Effect.runPromise(Effect.scoped(program).pipe(Effect.provide(Layer.mergeAll(OutboxStore.layer).pipe(Layer.provideMerge(postgresLayer({ url: Redacted.make(url), maxConnections: 6 })), Layer.provideMerge(Layer.mergeAll(KafkaProducer.layerWith({ brokers: "127.0.0.1:9092", clientId: "prof", ...defaultKafkaProducerLimits }), KafkaAdmin.layerWith({ brokers: "127.0.0.1:9092", clientId: "prof2", ...defaultKafkaAdminTimeouts })))))))
