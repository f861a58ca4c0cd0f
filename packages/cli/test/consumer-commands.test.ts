import { assert, it } from "@effect/vitest"
import { defaultKafkaAdminTimeouts, KafkaAdmin, postgresLayer } from "@pay/infra"
import { OutboxTopics } from "@pay/outbox/OutboxTopics"
import { acquireTestDatabase, shortId, testRun } from "@pay/testkit"
import { Effect, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { execFile } from "node:child_process"
import { fileURLToPath } from "node:url"
import { describe } from "vitest"

const run = testRun()
const repositoryRoot = fileURLToPath(new URL("../../..", import.meta.url))

interface CliRun {
  readonly exitCode: number
  readonly stdout: string
  readonly stderr: string
}

/** `node packages/cli/src/main.ts <args>` as an operator runs it (bounded, SIGKILL on timeout). */
const cli = (env: Readonly<Record<string, string>>, args: ReadonlyArray<string>) =>
  Effect.callback<CliRun>((resume) => {
    const child = execFile(
      process.execPath,
      ["packages/cli/src/main.ts", ...args],
      { cwd: repositoryRoot, env: { ...process.env, ...env }, timeout: 30_000, killSignal: "SIGKILL" },
      (error, stdout, stderr) => {
        const exitCode = error === null ? 0 : typeof error.code === "number" ? error.code : -1
        resume(Effect.succeed({ exitCode, stdout, stderr }))
      }
    )
    return Effect.sync(() => {
      if (child.exitCode === null) child.kill("SIGKILL")
    })
  })

const parse = (text: string): unknown => JSON.parse(text)

describe("consumer commands of the CLI (real process, real Postgres and Kafka)", () => {
  it.live("reconcile exits 0 when the sources agree and 1 naming the difference; dlq list shows parked records; lag, offsets, reset and replay on a topic of its own", () =>
    Effect.gen(function* () {
      const database = yield* acquireTestDatabase
      const prefix = `${run.kafkaTopicPrefix}${shortId()}.`
      const env = { DATABASE_URL: database.url, KAFKA_BROKERS: run.kafkaBrokers, KAFKA_TOPIC_PREFIX: prefix }
      yield* Effect.gen(function* () {
        yield* OutboxTopics.ensure(prefix)
        const sql = yield* SqlClient.SqlClient

        const agreed = yield* cli(env, ["reconcile"])
        assert.strictEqual(agreed.exitCode, 0, agreed.stderr)
        assert.deepStrictEqual(parse(agreed.stdout), { generation: 1, rows: 0, differences: [] })

        // A projection row no ledger transaction and no payment stands for.
        yield* sql`INSERT INTO settlement_projection (generation, merchant_id, currency, settled_gross_minor, fees_minor, net_minor, payment_count)
                   VALUES (1, 'mer_ghost', 'EUR', 100, 3, 97, 1)`
        const differs = yield* cli(env, ["reconcile"])
        assert.strictEqual(differs.exitCode, 1, differs.stderr)
        assert.include(differs.stdout, "mer_ghost")

        yield* sql`INSERT INTO dead_letter_events (consumer, topic, partition, "offset", event_id, record_key, record_value, headers, error, attempt_count)
                   VALUES ('settlement.g1', 't', 0, 7, NULL, 'pay_x', 'not json', '{"ce_type":"payment_settled"}'::jsonb, 'undecodable: test', 1)`
        // By the consumer's name: a known one (the live generation) lists its parked records.
        const listed = yield* cli(env, ["dlq", "list", "settlement.g1"])
        assert.strictEqual(listed.exitCode, 0, listed.stderr)
        assert.include(listed.stdout, "undecodable: test")

        const lag = yield* cli(env, ["consumers", "lag"])
        assert.strictEqual(lag.exitCode, 0, lag.stderr)
        assert.include(lag.stdout, "\"total_lag\": \"0\"")

        const reset = yield* cli(env, ["consumers", "reset", "settlement.g1", "5"])
        assert.strictEqual(reset.exitCode, 0, reset.stderr)
        const offsets = yield* cli(env, ["consumers", "offsets"])
        assert.strictEqual((offsets.stdout.match(/"next_offset": "5"/g) ?? []).length, 3, offsets.stdout)

        // An empty topic: the rebuild has nothing to read and swaps generation 2 in.
        const replayed = yield* cli(env, ["replay", "settlement"])
        assert.strictEqual(replayed.exitCode, 0, replayed.stderr)
        assert.include(replayed.stdout, "\"swapped\": true")
        const after = yield* cli(env, ["reconcile"])
        assert.strictEqual(after.exitCode, 0, "generation 2 has no ghost row")
      }).pipe(Effect.provide(Layer.mergeAll(
        postgresLayer({ url: Redacted.make(database.url), maxConnections: 2, applicationName: "pay-test" }),
        KafkaAdmin.layerWith({ brokers: run.kafkaBrokers, clientId: "pay-test-cli-admin", ...defaultKafkaAdminTimeouts })
      )))
    }).pipe(Effect.scoped))
})
