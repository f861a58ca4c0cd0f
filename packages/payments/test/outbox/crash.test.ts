import { decodeRows } from "@pay/infra"
import { assert, it } from "@effect/vitest"
import { shortId, withDatabase } from "@pay/testkit"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { MerchantRepository } from "@pay/merchants"
import { PaymentRepository } from "../../src/index.ts"
import { paymentsEventsTopic } from "@pay/outbox/OutboxTopics"
import {
  authorize,
  context,
  decodeAll,
  eventually,
  kcatReadAll,
  OutboxTestLayer,
  outboxRows,
  paymentInput,
  run,
  unpublishedCount
} from "./support.ts"

const repositoryRoot = fileURLToPath(new URL("../../../../", import.meta.url))
const publisherMain = "packages/outbox/src/main.ts"

interface Exited {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly output: string
}

interface PublisherProcess {
  readonly pid: number
  readonly output: () => string
  readonly exited: Effect.Effect<Exited>
  readonly signal: (signal: NodeJS.Signals) => Effect.Effect<void>
}

/**
 * `node packages/outbox/src/main.ts` as its own process (the same Node as this test). Killed by
 * its pid when the test's scope closes, if it still runs.
 */
const startPublisherProcess = (env: Record<string, string>) =>
  Effect.acquireRelease(
    Effect.sync((): PublisherProcess => {
      const child = spawn(process.execPath, [publisherMain], {
        cwd: repositoryRoot,
        env: { ...process.env, ...env },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let output = ""
      child.stdout.on("data", (chunk: Buffer) => {
        output += chunk.toString("utf8")
      })
      child.stderr.on("data", (chunk: Buffer) => {
        output += chunk.toString("utf8")
      })
      const exitedPromise = new Promise<Exited>((resolve) => {
        child.on("exit", (code, signal) => resolve({ code, signal, output }))
      })
      return {
        pid: child.pid ?? 0,
        output: () => output,
        exited: Effect.promise(() => exitedPromise),
        signal: (signal) =>
          Effect.sync(() => {
            if (child.exitCode === null && child.signalCode === null) child.kill(signal)
          })
      }
    }),
    (child) => child.signal("SIGKILL")
  )

/** Waits for the process to end, at most `timeout_ms` (then fails with its output). */
const exitWithin = (child: PublisherProcess, timeout_ms: number) =>
  child.exited.pipe(
    Effect.timeoutOption(timeout_ms),
    Effect.flatMap((exited) =>
      exited._tag === "Some"
        ? Effect.succeed(exited.value)
        : Effect.die(new Error(`publisher process ${child.pid} still running after ${timeout_ms} ms; output:\n${child.output().slice(-4_000)}`))
    )
  )

it.live(
  "the publisher process killed (SIGKILL) after the broker acked and before the rows were marked: on restart the same events arrive again with the same ids; SIGTERM then stops it cleanly",
  () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const [database] = yield* decodeRows(Schema.Struct({ name: Schema.String }))(sql`SELECT current_database() AS name`)
      const databaseUrl = withDatabase(run.adminDatabaseUrl, database?.name ?? "")
      const prefix = `${run.kafkaTopicPrefix}${shortId()}.`
      const topic = paymentsEventsTopic(prefix)

      const payments = yield* PaymentRepository
      const merchant = yield* (yield* MerchantRepository).create("Crash merchant")
      const first = yield* payments.create(paymentInput(merchant, 100), context)
      yield* payments.apply(merchant.id, first.id, authorize, context)
      yield* payments.create(paymentInput(merchant, 200), context)
      yield* payments.create(paymentInput(merchant, 300), context)
      const committed = yield* outboxRows
      assert.strictEqual(committed.length, 4)

      const env = {
        DATABASE_URL: databaseUrl,
        DATABASE_POOL_SIZE: "4",
        KAFKA_BROKERS: run.kafkaBrokers,
        KAFKA_TOPIC_PREFIX: prefix,
        OUTBOX_POLL_INTERVAL_MS: "100",
        OUTBOX_BACKOFF_BASE_MS: "50",
        OUTBOX_BACKOFF_MAX_MS: "500"
      }

      // 1. The crash: the process creates the topic, claims the first batch (3 rows: the first
      //    payment's two events and the second payment's creation), gets the broker's ack, and
      //    SIGKILLs itself before marking. One worker, so that the batch in the crash window is
      //    exactly those 3 rows.
      const crashing = yield* startPublisherProcess({ ...env, OUTBOX_WORKERS: "1", OUTBOX_BATCH_SIZE: "3", OUTBOX_FAULT_CRASH_AFTER_ACK: "1" })
      const crashed = yield* exitWithin(crashing, 30_000)
      assert.strictEqual(crashed.signal, "SIGKILL", crashed.output.slice(-2_000))
      const afterCrash = yield* decodeAll(yield* kcatReadAll(run.kafkaBrokers, topic))
      const firstBatchIds = afterCrash.map((record) => record.envelope.ce_id).sort()
      assert.strictEqual(firstBatchIds.length, 3, "the acked batch is on the topic")
      const rowsAfterCrash = yield* outboxRows
      assert.isTrue(rowsAfterCrash.every((row) => row.published_at === null), "no row was marked: the transaction died with the process")

      // 2. The restart, without the fault: everything is published, the first batch once more.
      const restarted = yield* startPublisherProcess(env)
      yield* eventually("outbox drained by the restarted process", Effect.map(unpublishedCount, (count) => count === 0), 30_000)

      // 3. SIGTERM: the loop stops after the batch in hand, the process exits on its own.
      yield* restarted.signal("SIGTERM")
      const stopped = yield* exitWithin(restarted, 15_000)
      assert.isNull(stopped.signal, `ended by a signal instead of shutting down: ${stopped.output.slice(-2_000)}`)
      assert.include(stopped.output, "outbox publisher stopped")

      const records = yield* decodeAll(yield* kcatReadAll(run.kafkaBrokers, topic))
      const ids = records.map((record) => record.envelope.ce_id)
      assert.strictEqual(records.length, 3 + 4, "the first batch twice, then the rest")
      // At least once: the re-sent events carry the SAME ids, so consumers can deduplicate.
      for (const id of firstBatchIds) assert.strictEqual(ids.filter((seen) => seen === id).length, 2, `${id} sent twice`)
      // Deduplicated by id, the topic matches the committed changes one for one.
      const deduplicated = [...new Set(ids)].sort()
      assert.deepStrictEqual(deduplicated, committed.map((row) => row.id).sort())
      // Per payment, first occurrences keep commit order.
      const firstSeen = records.filter((record, index) => ids.indexOf(record.envelope.ce_id) === index)
      assert.deepStrictEqual(
        firstSeen.filter((record) => record.event.payment_id === first.id).map((record) => record.event.type),
        ["payment_created", "payment_authorized"]
      )
    }).pipe(Effect.provide(OutboxTestLayer(run.kafkaBrokers, "pay-test-crash"))),
  60_000
)
