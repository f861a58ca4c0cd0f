import { assert, it } from "@effect/vitest"
import { defaultKafkaAdminTimeouts, defaultKafkaConsumerOptions, defaultKafkaProducerLimits, KafkaAdmin, KafkaConsumer, KafkaProducer, postgresLayer } from "@pay/infra"
import { toEventRecord } from "@pay/outbox/CloudEvents"
import { OutboxTopics, paymentsEventsTopic } from "@pay/outbox/OutboxTopics"
import { acquireTestDatabase, shortId, testRun } from "@pay/testkit"
import { Effect, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { execFile, spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
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

/**
 * The same, with its stdout closed from the start: the reader of `pnpm cli … | jq` gone (jq failed
 * to parse, `| head -1` had its line). Its writes to stdout fail with EPIPE.
 */
const cliWithClosedStdout = (env: Readonly<Record<string, string>>, args: ReadonlyArray<string>) =>
  Effect.callback<CliRun>((resume) => {
    const child = spawn(process.execPath, ["packages/cli/src/main.ts", ...args], {
      cwd: repositoryRoot,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    child.stdout.destroy()
    let stderr = ""
    child.stderr.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString("utf8")).slice(-20_000)
    })
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000)
    child.on("exit", (code) => {
      clearTimeout(timer)
      resume(Effect.succeed({ exitCode: code ?? -1, stdout: "", stderr }))
    })
    return Effect.sync(() => {
      clearTimeout(timer)
      if (child.exitCode === null) child.kill("SIGKILL")
    })
  })

const parse = (text: string): unknown => JSON.parse(text)

/** A payment_created event as the publisher sends it, for a parked row's record. */
const createdEvent = (merchant: string) => {
  const eventId = randomUUID()
  const payment = `pay_${"1".repeat(24)}`
  const record = toEventRecord({
    id: eventId, position: 0n, aggregate_type: "payment", aggregate_id: payment, event_type: "payment_created", event_version: 1,
    payload: { type: "payment_created", payment_id: payment, merchant_id: merchant, amount_minor: 1_050, currency: "EUR", version: 1, occurred_at: "2026-12-03T17:00:00.000Z", status: "CREATED" },
    headers: { correlation_id: "corr-cli" }, created_at: new Date(), attempt_count: 0
  })
  return { eventId, record }
}

describe("consumer commands of the CLI (real process, real Postgres and Kafka)", () => {
  it.live("reconcile exits 0 when the sources agree and 1 naming the difference; dlq list shows parked records; lag, offsets, reset (refused above the end offsets) and replay (JSON alone on stdout) on a topic of its own", () =>
    Effect.gen(function* () {
      const database = yield* acquireTestDatabase
      const prefix = `${run.kafkaTopicPrefix}${shortId()}.`
      const env = { DATABASE_URL: database.url, KAFKA_BROKERS: run.kafkaBrokers, KAFKA_TOPIC_PREFIX: prefix }
      yield* Effect.gen(function* () {
        yield* OutboxTopics.ensure(prefix)
        const sql = yield* SqlClient.SqlClient

        const agreed = yield* cli(env, ["reconcile"])
        assert.strictEqual(agreed.exitCode, 0, agreed.stderr)
        assert.deepStrictEqual(parse(agreed.stdout), { generation: 1, rows: 0, in_flight_events: 0, differences: [], corrections: [] })

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

        // No name: every consumer the deployment runs (a lag page may name either).
        const lag = yield* cli(env, ["consumers", "lag"])
        assert.strictEqual(lag.exitCode, 0, lag.stderr)
        assert.include(lag.stdout, "\"total_lag\": 0")
        // snake_case like the rest of the CLI's output.
        assert.include(lag.stdout, "\"log_end_offset\": ")
        assert.include(lag.stdout, "\"stored_offset\": ")
        assert.notInclude(lag.stdout, "logEndOffset")
        assert.isTrue(Array.isArray(parse(lag.stdout)), lag.stdout)
        assert.deepStrictEqual([...lag.stdout.matchAll(/"consumer": "([^"]+)"/g)].map((match) => match[1]), ["settlement.g1", "webhooks"])
        // Another deployment's prefix (no such topic): one line naming the setting, not a stack trace.
        const elsewhere = yield* cli({ ...env, KAFKA_TOPIC_PREFIX: `${prefix}nosuch.` }, ["consumers", "lag", "webhooks"])
        assert.strictEqual(elsewhere.exitCode, 1, elsewhere.stderr)
        assert.include(elsewhere.stderr, "KAFKA_TOPIC_PREFIX")
        assert.notInclude(elsewhere.stderr, "    at ")

        // Above the log end offsets (0: an empty topic) the consumer would skip every record to come,
        // its lag reading 0: refused with the end offsets, nothing moved.
        const beyond = yield* cli(env, ["consumers", "reset", "settlement.g1", "5"])
        assert.deepStrictEqual([beyond.exitCode, beyond.stdout], [1, ""], beyond.stderr)
        assert.include(beyond.stderr, "offset 5 is above the log end offset of partition(s) 0, 1, 2 (end offsets by partition: 0, 0, 0)")
        const notMoved = yield* cli(env, ["consumers", "offsets"])
        assert.deepStrictEqual(parse(notMoved.stdout), [])
        const reset = yield* cli(env, ["consumers", "reset", "settlement.g1", "0"])
        assert.strictEqual(reset.exitCode, 0, reset.stderr)
        const offsets = yield* cli(env, ["consumers", "offsets"])
        assert.strictEqual((offsets.stdout.match(/"next_offset": 0,/g) ?? []).length, 3, offsets.stdout)
        // The reset's offsets are positions in the topic as it is: its id is recorded with them
        // (else the consumer's next start would take them for another log's and rewind them).
        const { topicId } = yield* (yield* KafkaAdmin).describeTopic(paymentsEventsTopic(prefix))
        const recorded = yield* sql`SELECT topic_id FROM consumer_topic_ids WHERE consumer = 'settlement.g1'`
        assert.deepStrictEqual(recorded.map((row) => row["topic_id"]), [topicId])
        // A process still runs the consumer (a member of its group): refused in one line, exit 1.
        yield* Effect.scoped(Effect.gen(function* () {
          yield* (yield* KafkaConsumer).subscribe({ groupId: `${prefix}settlement.g1`, topics: [paymentsEventsTopic(prefix)] })
          const active = yield* cli(env, ["consumers", "reset", "settlement.g1", "0"])
          assert.strictEqual(active.exitCode, 1, active.stderr)
          assert.include(active.stderr, "still has members: stop every process that runs settlement.g1")
          assert.notInclude(active.stderr, "    at ")
        }))

        // An empty topic: the rebuild has nothing to read and swaps generation 2 in. Its log lines
        // go to stderr; stdout is the result alone (it used to carry the logs: `| jq` failed).
        const replayed = yield* cli(env, ["replay", "settlement"])
        assert.strictEqual(replayed.exitCode, 0, replayed.stderr)
        assert.include(JSON.stringify(parse(replayed.stdout)), "\"swapped\":true")
        assert.include(replayed.stderr, "settlement rebuild starts")
        const after = yield* cli(env, ["reconcile"])
        assert.strictEqual(after.exitCode, 0, "generation 2 has no ghost row")
        // The row parked for generation 1, no longer live: left out of `dlq list` (said on stderr),
        // listed with --all and by its name (outside consumer operator's review: every generation's
        // rows were listed, one poison record once per replay).
        const liveOnly = yield* cli(env, ["dlq", "list"])
        assert.strictEqual(liveOnly.exitCode, 0, liveOnly.stderr)
        assert.deepStrictEqual(parse(liveOnly.stdout), [])
        assert.include(liveOnly.stderr, "1 open row(s) of settlement generations no longer live (older than settlement.g2) left out: pnpm cli dlq list --all")
        const every = yield* cli(env, ["dlq", "list", "--all"])
        assert.strictEqual(every.exitCode, 0, every.stderr)
        assert.include(every.stdout, "undecodable: test")
        // A thousand old rows before a live one: the live one is still listed (it was cut by the
        // list's limit before the old ones were left out: third re-test), and --all says it stopped.
        yield* sql`INSERT INTO dead_letter_events (consumer, topic, partition, "offset", event_id, record_key, record_value, headers, error, attempt_count)
                   SELECT 'settlement.g1', 't', 1, n, NULL, 'pay_x', 'not json', '{}'::jsonb, 'old generation', 1 FROM generate_series(100, 1099) AS n`
        yield* sql`INSERT INTO dead_letter_events (consumer, topic, partition, "offset", event_id, record_key, record_value, headers, error, attempt_count)
                   VALUES ('settlement.g2', 't', 2, 5, NULL, 'pay_y', 'not json', '{}'::jsonb, 'live generation', 1),
                          ('settlement.g3', 't', 2, 6, NULL, 'pay_z', 'not json', '{}'::jsonb, 'generation being built', 1)`
        const liveBehind = yield* cli(env, ["dlq", "list"])
        assert.strictEqual(liveBehind.exitCode, 0, liveBehind.stderr)
        assert.include(liveBehind.stdout, "live generation")
        assert.include(liveBehind.stdout, "generation being built", "a replay's newer generation is kept (fourth re-test)")
        assert.include(liveBehind.stderr, "1001 open row(s) of settlement generations no longer live (older than settlement.g2) left out")
        const capped = yield* cli(env, ["dlq", "list", "--all"])
        assert.include(capped.stderr, "the first 1000 rows by id: more may be open")
      }).pipe(Effect.provide(Layer.mergeAll(
        postgresLayer({ url: Redacted.make(database.url), maxConnections: 2, applicationName: "pay-test" }),
        KafkaAdmin.layerWith({ brokers: run.kafkaBrokers, clientId: "pay-test-cli-admin", ...defaultKafkaAdminTimeouts }),
        KafkaConsumer.layerWith({ brokers: run.kafkaBrokers, clientId: "pay-test-cli-member", ...defaultKafkaConsumerOptions })
      )))
    }).pipe(Effect.scoped), { timeout: 180_000 })

  it.live("dlq redrive: a record that still fails exits 1 (its error on stderr); a record the webhooks consumer parked is applied; a consumer no handler stands for is named, exit 1", () =>
    Effect.gen(function* () {
      const database = yield* acquireTestDatabase
      const env = { DATABASE_URL: database.url, KAFKA_BROKERS: run.kafkaBrokers, KAFKA_TOPIC_PREFIX: `${run.kafkaTopicPrefix}${shortId()}.` }
      yield* Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        yield* sql`INSERT INTO dead_letter_events (consumer, topic, partition, "offset", event_id, record_key, record_value, headers, error, attempt_count)
                   VALUES ('settlement.g1', 't', 0, 7, NULL, 'pay_x', 'not json', '{"ce_type":"payment_settled"}'::jsonb, 'undecodable: test', 1)`
        // A re-drive that still fails (the record does not decode) used to exit 0: now its outcome on
        // stdout, the error on stderr, exit 1.
        const [parkedRow] = yield* sql<{ readonly id: string }>`SELECT id::text AS id FROM dead_letter_events`
        const stillFailing = yield* cli(env, ["dlq", "redrive", parkedRow?.id ?? "0"])
        assert.strictEqual(stillFailing.exitCode, 1, stillFailing.stderr)
        assert.deepStrictEqual(parse(stillFailing.stdout), { id: Number(parkedRow?.id), outcome: "failed" })
        assert.include(stillFailing.stderr, `re-drive of parked event ${parkedRow?.id} failed: `)

        // A record the webhooks consumer parked: re-driven through its handler (it failed with an
        // empty `NoHandler:` before), the merchant's delivery queued once.
        const merchant = `mer_${"2".repeat(24)}`
        yield* sql`INSERT INTO merchants (id, name) VALUES (${merchant}, 'cli redrive')`
        yield* sql`INSERT INTO webhook_endpoints (id, merchant_id, url, event_types, status) VALUES (${`we_${"3".repeat(24)}`}, ${merchant}, 'https://example.com/hook', ARRAY['*'], 'enabled')`
        const { eventId, record } = createdEvent(merchant)
        const parkAs = (consumer: string) => sql<{ readonly id: string }>`
          INSERT INTO dead_letter_events (consumer, topic, partition, "offset", event_id, record_key, record_value, headers, error, attempt_count)
          VALUES (${consumer}, 't', 1, 9, ${eventId}, ${record.key}, ${record.value}, ${JSON.stringify(record.headers)}::jsonb, 'simulated', 5)
          RETURNING id::text AS id`
        const [webhooksRow] = yield* parkAs("webhooks")
        const redriven = yield* cli(env, ["dlq", "redrive", webhooksRow?.id ?? "0"])
        assert.deepStrictEqual([redriven.exitCode, parse(redriven.stdout)], [0, { id: Number(webhooksRow?.id), outcome: "applied" }], redriven.stderr)
        const [queued] = yield* sql<{ readonly count: number }>`SELECT count(*)::int AS count FROM webhook_deliveries WHERE event_id = ${eventId}::uuid`
        assert.strictEqual(queued?.count, 1)
        // A consumer no handler stands for: said by name, exit 1, nothing on stdout.
        const [strayRow] = yield* parkAs("ledger.audit")
        const stray = yield* cli(env, ["dlq", "redrive", strayRow?.id ?? "0"])
        assert.deepStrictEqual([stray.exitCode, stray.stdout], [1, ""], stray.stderr)
        assert.include(stray.stderr, `parked event ${strayRow?.id} belongs to consumer ledger.audit`)
        // That one must never be applied: dismissed with a reason (it stayed in `dlq list` for ever).
        const dismissed = yield* cli(env, ["dlq", "dismiss", strayRow?.id ?? "0", "parked under a consumer this deployment never ran"])
        assert.deepStrictEqual(
          [dismissed.exitCode, parse(dismissed.stdout)],
          [0, { id: Number(strayRow?.id), dismissed: true, reason: "parked under a consumer this deployment never ran" }],
          dismissed.stderr
        )
        const [open] = yield* sql<{ readonly count: number }>`SELECT count(*)::int AS count FROM dead_letter_events WHERE consumer = 'ledger.audit' AND dismissed_at IS NULL`
        assert.strictEqual(open?.count, 0)
      }).pipe(Effect.provide(postgresLayer({ url: Redacted.make(database.url), maxConnections: 2, applicationName: "pay-test" })))
    }).pipe(Effect.scoped), { timeout: 90_000 })

  // `pnpm cli replay settlement | jq`: jq left at the first log line and the next write's EPIPE
  // crashed the CLI in the middle of the rebuild (an unhandled 'error' event), leaving a
  // half-built generation. A closed stdout now costs only the result: the replay finishes.
  it.live("a replay whose stdout is closed (the reader left) finishes and swaps, says so on stderr and exits 1", () =>
    Effect.gen(function* () {
      const database = yield* acquireTestDatabase
      const prefix = `${run.kafkaTopicPrefix}${shortId()}.`
      const env = { DATABASE_URL: database.url, KAFKA_BROKERS: run.kafkaBrokers, KAFKA_TOPIC_PREFIX: prefix }
      yield* Effect.gen(function* () {
        yield* OutboxTopics.ensure(prefix)
        const sql = yield* SqlClient.SqlClient
        const replayed = yield* cliWithClosedStdout(env, ["replay", "settlement"])
        assert.notInclude(replayed.stderr, "Unhandled 'error' event", replayed.stderr)
        const [live] = yield* sql<{ readonly generation: number }>`SELECT generation FROM settlement_projection_live`
        assert.strictEqual(live?.generation, 2, `the rebuild finished and swapped: ${replayed.stderr.slice(-2_000)}`)
        assert.include(replayed.stderr, "stdout is closed (EPIPE): output was lost")
        assert.strictEqual(replayed.exitCode, 1)
      }).pipe(Effect.provide(Layer.mergeAll(
        postgresLayer({ url: Redacted.make(database.url), maxConnections: 2, applicationName: "pay-test" }),
        KafkaAdmin.layerWith({ brokers: run.kafkaBrokers, clientId: "pay-test-cli-admin-epipe", ...defaultKafkaAdminTimeouts })
      )))
    }).pipe(Effect.scoped), { timeout: 60_000 })

  it.live("consumers reset forward past records the consumer never applied is refused, naming how many, unless --skip; backward always passes (outside consumer operations review: 368 records skipped in silence)", () =>
    Effect.gen(function* () {
      const database = yield* acquireTestDatabase
      const prefix = `${run.kafkaTopicPrefix}${shortId()}.`
      const env = { DATABASE_URL: database.url, KAFKA_BROKERS: run.kafkaBrokers, KAFKA_TOPIC_PREFIX: prefix }
      yield* Effect.gen(function* () {
        const { topic } = yield* OutboxTopics.ensure(prefix)
        // Two records in each of the three partitions; no consumer has applied any.
        yield* (yield* KafkaProducer).send([0, 1, 2].flatMap((partition) => [0, 1].map((n) => ({
          topic, partition, key: `pay_reset${partition}${n}`, value: "{}", headers: {}
        }))))
        const forward = yield* cli(env, ["consumers", "reset", "settlement.g1", "1"])
        assert.deepStrictEqual([forward.exitCode, forward.stdout], [1, ""], forward.stderr)
        assert.include(forward.stderr, "offset 1 is ahead of what settlement.g1 has applied (stored offsets by partition: 0, 0, 0): 3 record(s) would never be applied; nothing moved (add --skip")
        assert.deepStrictEqual(parse((yield* cli(env, ["consumers", "offsets"])).stdout), [], "nothing moved")
        const skipped = yield* cli(env, ["consumers", "reset", "settlement.g1", "1", "--skip"])
        assert.strictEqual(skipped.exitCode, 0, skipped.stderr)
        assert.include(skipped.stdout, `"skipped_records": 3`)
        const back = yield* cli(env, ["consumers", "reset", "settlement.g1", "0"])
        assert.strictEqual(back.exitCode, 0, back.stderr)
        assert.include(back.stdout, `"skipped_records": 0`)
        assert.deepStrictEqual(Reflect.get(Object(parse(back.stdout)), "previous_offsets"), [1, 1, 1], back.stdout)
        const wrongFlag = yield* cli(env, ["consumers", "reset", "settlement.g1", "1", "--force"])
        assert.strictEqual(wrongFlag.exitCode, 2, wrongFlag.stderr)
      }).pipe(Effect.provide(Layer.mergeAll(
        postgresLayer({ url: Redacted.make(database.url), maxConnections: 2, applicationName: "pay-test" }),
        KafkaAdmin.layerWith({ brokers: run.kafkaBrokers, clientId: "pay-test-cli-admin-skip", ...defaultKafkaAdminTimeouts }),
        KafkaProducer.layerWith({ brokers: run.kafkaBrokers, clientId: "pay-test-cli-producer-skip", ...defaultKafkaProducerLimits })
      )))
    }).pipe(Effect.scoped), { timeout: 60_000 })
})
