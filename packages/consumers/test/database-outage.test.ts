// A database outage is not the records' fault: it parks nothing (docs/consumers.md, "Poison
// records"; RecordProcessor.ts `isInfrastructure`). The settlement projection's partition handler
// (the slice path, and its fallback to one transaction per record with bounded retries) runs
// against a real Postgres reached through a fault proxy that cuts every open connection and
// refuses new ones: the handling fails as an outage, no record is parked, no offset moves; once the
// database is back, the same records are applied exactly once. Then the harder case: each
// transaction loses its connection before its COMMIT while new connections work (parking would
// succeed): still nothing parked.
import { assert, it } from "@effect/vitest"
import { decodeRows, type KafkaRecord, postgresLayer } from "@pay/infra"
import { acquireTestDatabase } from "@pay/testkit"
import { startPostgresProxy } from "@pay/testkit/FaultProxy"
import { Context, Effect, Layer, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { isSqlError } from "effect/sql/SqlError"
import { makePartitionHandler } from "../src/PartitionBatch.ts"
import { isInfrastructure, makeRecordProcessor } from "../src/RecordProcessor.ts"
import { makeSettlementProjection } from "../src/SettlementProjection.ts"
import { eventMessage, expectedProjection, lifecycle, merchantId, projectionAsExpected, recordsOf, testOptions } from "./support.ts"

const topic = "outage-test.payments.events"


const Counts = Schema.Struct({ parked: Schema.Int, processed: Schema.Int, offsets: Schema.Int })

const clientOf = (url: string) =>
  Effect.map(
    Layer.build(postgresLayer({ url: Redacted.make(url), maxConnections: 2, answerTimeout_ms: 2_000, applicationName: "pay-test-outage" })),
    (context) => Context.get(context, SqlClient.SqlClient)
  )

it.live("a database outage during a slice parks nothing and moves no offset; after it the records are applied once", () =>
  Effect.scoped(Effect.gen(function* () {
    const database = yield* acquireTestDatabase
    const direct = yield* clientOf(database.url)
    const { proxy, url: viaProxy } = yield* startPostgresProxy(database.url)
    const sql = yield* clientOf(viaProxy)

    // While `cutting`, every transaction (the slice's, then each record's, each retry's) loses its
    // connection before its COMMIT, while new connections are accepted: parking a record would
    // succeed, so only the outage rule keeps the records from being parked.
    let cutting = false
    const faults = { insideTransaction: () => (cutting ? Effect.asVoid(proxy.cutAll) : Effect.void) }
    const projection = makeSettlementProjection(sql)
    const settings = { handler: projection.handler(1), dlqTopic: null, options: { ...testOptions, transactionRecords_max: 100 }, faults }
    const handler = yield* Effect.provideService(
      Effect.flatMap(makeRecordProcessor(settings), (processor) => makePartitionHandler(settings, processor)),
      SqlClient.SqlClient,
      sql
    )
    const handlePartition = (batch: ReadonlyArray<KafkaRecord>) => Effect.provideService(handler(batch), SqlClient.SqlClient, sql)
    const merchant = merchantId()
    const payments = Array.from({ length: 4 }, (_, n) => lifecycle(merchant, "EUR", 1_000 + n * 11, true))
    const records = recordsOf(topic, payments.flatMap((payloads) => payloads.map((payload) => eventMessage(topic, payload))))
    const counts = decodeRows(Counts)(direct`
      SELECT (SELECT count(*)::int FROM dead_letter_events) AS parked,
             (SELECT count(*)::int FROM processed_events) AS processed,
             (SELECT count(*)::int FROM consumer_offsets) AS offsets`).pipe(Effect.map((rows) => rows[0]))

    // The database goes away: open connections reset, new ones refused.
    yield* proxy.setMode("refuse")
    yield* proxy.cutAll
    const during = yield* Effect.result(handlePartition(records))
    assert.strictEqual(during._tag, "Failure", "the slice fails: nothing can be committed")
    if (during._tag === "Failure") {
      assert.isTrue(isSqlError(during.failure) && isInfrastructure(during.failure), `an outage, not the records' fault: ${String(during.failure)}`)
    }
    assert.deepStrictEqual(yield* counts, { parked: 0, processed: 0, offsets: 0 }, "nothing parked, claimed or stored")

    // Connections lost inside every transaction, the database reachable for anything new.
    yield* proxy.setMode("pass")
    cutting = true
    const cut = yield* Effect.result(handlePartition(records))
    cutting = false
    assert.strictEqual(cut._tag, "Failure", "every transaction lost its connection")
    if (cut._tag === "Failure") {
      assert.isTrue(isSqlError(cut.failure) && isInfrastructure(cut.failure), `an outage, not the records' fault: ${String(cut.failure)}`)
    }
    assert.isAtLeast(proxy.connectionsCut(), testOptions.attempt_max, "each attempt was cut")
    assert.deepStrictEqual(yield* counts, { parked: 0, processed: 0, offsets: 0 }, "nothing parked although parking could have been written")

    // Back: the same records (Kafka redelivers them: no offset was committed) are applied once.
    yield* handlePartition(records)
    yield* handlePartition(records)
    assert.deepStrictEqual(yield* counts, { parked: 0, processed: records.length, offsets: 1 })
    assert.deepStrictEqual(projectionAsExpected(yield* makeSettlementProjection(direct).rows(1)), expectedProjection(payments.map((payloads) => payloads[2])))
  })), 60_000)
