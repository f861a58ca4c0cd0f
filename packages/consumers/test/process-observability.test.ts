// The consumers and the webhook sender run as processes of their own in production
// (CONSUMERS_ENABLED=false / WEBHOOK_SENDER_ENABLED=false on the servers). Their alerts
// (ConsumerLagHigh, ConsumerRecordsParked, ReconciliationDifferences, WebhookDeliveriesLate,
// WebhookSecretsUnopenable) read series that only those processes hold, yet neither served
// /metrics, and both logged Effect's nested JSON instead of the server's lines (flat
// correlation_id, trace_id): an operator could neither alert on them nor find their lines by id.
// Each process now serves /metrics on METRICS_PORT when it is set and logs like the server.
// The stand-alone outbox publisher too; and each samples its own Postgres pool
// (db_client_connections, db_client_samples_failed_total: DatabaseUnreachable must see a database
// that refuses a process which has no traffic, whichever process it is).
import { assert, it } from "@effect/vitest"
import { acquireTestDatabase, startManagedProcess } from "@pay/testkit"
import { freePort } from "@pay/testkit/ChildProcess"
import { Effect, Schema } from "effect"
import { freshTopics, kafkaTestClients, run } from "./support.ts"

const scrape = (port: number) =>
  Effect.tryPromise(async () => (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5_000) })).text())

const seriesNames = (text: string): ReadonlySet<string> =>
  new Set(text.split("\n").filter((line) => line !== "" && !line.startsWith("#")).map((line) => line.split(/[{ ]/)[0] ?? ""))

/** Scrapes until every name is exported (the lag and reconciliation gauges come after their first round), bounded. */
/** Each process's own Postgres pool, sampled (RuntimeMetrics.ts DatabasePoolMetricsLive). */
const poolSeries = ["db_client_connections", "db_client_connections_max", "db_client_samples_failed_total"]

const awaitSeries = (port: number, names: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    let missing: ReadonlyArray<string> = names
    for (let attempt = 0; attempt < 100 && missing.length > 0; attempt++) {
      if (attempt > 0) yield* Effect.sleep("200 millis")
      const exported = seriesNames(yield* scrape(port))
      missing = names.filter((name) => !exported.has(name))
    }
    return missing
  })

/** The consumers' own process, /metrics on `port`, lag every 200 ms and reconciliation every second. */
const startConsumers = (label: string, port: number, env: Readonly<Record<string, string>>) =>
  startManagedProcess({
    script: "packages/consumers/src/main.ts",
    label,
    env: { ...env, METRICS_PORT: String(port), CONSUMER_LAG_INTERVAL_MS: "200", CONSUMER_RECONCILE_INTERVAL_MS: "1000" },
    outputKept_chars: 20_000,
    readyUrl: `http://127.0.0.1:${port}/metrics`,
    startTimeout_ms: 30_000
  })

// `message` is the text: a log call's object used to be printed as `["text", {…}]` (Logging.ts flatMessage).
const LogLine = Schema.fromJsonString(Schema.Struct({ timestamp: Schema.String, level: Schema.String, message: Schema.String }))
const decodeLogLine = Schema.decodeUnknownOption(LogLine)

/** Every JSON line of the output is a line of the server's format (flat: `level`, not Effect's `logLevel` and nested annotations). */
const assertServerLogFormat = (output: string, label: string) => {
  const lines = output.split("\n").filter((line) => line.startsWith("{"))
  assert.isAbove(lines.length, 0, `${label} logged: ${output.slice(-1_000)}`)
  for (const line of lines) assert.isTrue(decodeLogLine(line)._tag === "Some", `${label}: ${line.slice(0, 300)}`)
}

it.live("the consumers' process, the webhook sender's and the outbox publisher's serve /metrics on METRICS_PORT with their series and their pool's, and log the server's JSON lines", () =>
  Effect.scoped(Effect.gen(function* () {
    const database = yield* acquireTestDatabase
    const topics = yield* freshTopics
    const consumersPort = yield* freePort
    const consumers = yield* startConsumers("consumers", consumersPort, { DATABASE_URL: database.url, DATABASE_POOL_SIZE: "4", KAFKA_BROKERS: run.kafkaBrokers, KAFKA_TOPIC_PREFIX: topics.prefix })
    // db_client_connections too: DatabasePoolSaturated is "a process's pool", and the consumers'
    // pool (the one that limits them) was measured nowhere.
    const consumerSeries = ["consumer_lag_records", "consumer_parked_total", "reconciliation_differences", "nodejs_eventloop_delay_p99_seconds", ...poolSeries]
    assert.deepStrictEqual(yield* awaitSeries(consumersPort, consumerSeries), [], `consumers' /metrics: ${consumers.output().slice(-1_000)}`)
    assertServerLogFormat(consumers.output(), "consumers")
    // Lag for both consumers the process runs, under their real names only: the settlement
    // consumer's placeholder name ("settlement", no stored offsets) used to report the whole topic
    // as its lag, frozen after the rename (a ConsumerLagHigh page for nobody); the webhooks
    // consumer had no series.
    const lagConsumers = (text: string) =>
      new Set(text.split("\n").filter((line) => line.startsWith("consumer_lag_records{")).map((line) => /consumer="([^"]*)"/.exec(line)?.[1] ?? ""))
    let lagged: ReadonlySet<string> = new Set()
    for (let attempt = 0; attempt < 100 && lagged.size < 2; attempt++) {
      if (attempt > 0) yield* Effect.sleep("200 millis")
      lagged = lagConsumers(yield* scrape(consumersPort))
    }
    assert.deepStrictEqual([...lagged].sort(), ["settlement.g1", "webhooks"])
    // The failed measurements, from 0 for each: a stale lag can be told from a real 0.
    const unavailable = (yield* scrape(consumersPort)).split("\n").filter((line) => line.startsWith("consumer_lag_unavailable_total{"))
    assert.deepStrictEqual(unavailable.map((line) => [/consumer="([^"]*)"/.exec(line)?.[1], line.split(" ").at(-1)]).sort(), [["settlement.g1", "0"], ["webhooks", "0"]])
    // When each was last measured (ConsumerLagUnmeasured reads it): a Unix time within the last minute.
    const measured = (yield* scrape(consumersPort)).split("\n").filter((line) => line.startsWith("consumer_lag_measured_timestamp_seconds{"))
    assert.deepStrictEqual(measured.map((line) => /consumer="([^"]*)"/.exec(line)?.[1]).sort(), ["settlement.g1", "webhooks"])
    for (const line of measured) assert.isBelow(Math.abs(Date.now() / 1_000 - Number(line.split(" ").at(-1))), 60, line)

    const senderPort = yield* freePort
    const sender = yield* startManagedProcess({
      script: "packages/webhooks/src/main.ts",
      label: "webhook sender",
      env: { DATABASE_URL: database.url, DATABASE_POOL_SIZE: "2", METRICS_PORT: String(senderPort) },
      outputKept_chars: 20_000,
      readyUrl: `http://127.0.0.1:${senderPort}/metrics`,
      startTimeout_ms: 30_000
    })
    const senderSeries = ["webhook_oldest_pending_age_seconds", "webhook_secrets_unopenable_total", "webhook_endpoints_disabled_total", "nodejs_eventloop_delay_p99_seconds", ...poolSeries]
    assert.deepStrictEqual(yield* awaitSeries(senderPort, senderSeries), [], `sender's /metrics: ${sender.output().slice(-1_000)}`)
    assertServerLogFormat(sender.output(), "webhook sender")

    const publisherPort = yield* freePort
    const publisher = yield* startManagedProcess({
      script: "packages/outbox/src/main.ts",
      label: "outbox publisher",
      env: { DATABASE_URL: database.url, DATABASE_POOL_SIZE: "2", KAFKA_BROKERS: run.kafkaBrokers, KAFKA_TOPIC_PREFIX: topics.prefix, METRICS_PORT: String(publisherPort) },
      outputKept_chars: 20_000,
      readyUrl: `http://127.0.0.1:${publisherPort}/metrics`,
      startTimeout_ms: 30_000
    })
    const publisherSeries = ["outbox_backlog_rows", "outbox_published_total", "nodejs_eventloop_delay_p99_seconds", ...poolSeries]
    assert.deepStrictEqual(yield* awaitSeries(publisherPort, publisherSeries), [], `publisher's /metrics: ${publisher.output().slice(-1_000)}`)
    assertServerLogFormat(publisher.output(), "outbox publisher")
  }).pipe(Effect.provide(kafkaTestClients("process-observability")))), { timeout: 120_000 })

it.live("the consumers' process started while Kafka is down: its lag is counted unavailable and reconciliation runs, and its log says the consumers wait for the topic", () =>
  Effect.scoped(Effect.gen(function* () {
    const database = yield* acquireTestDatabase
    const consumersPort = yield* freePort
    const nobody = yield* freePort
    const consumers = yield* startConsumers("consumers without Kafka", consumersPort, {
      DATABASE_URL: database.url,
      DATABASE_POOL_SIZE: "2",
      KAFKA_BROKERS: `127.0.0.1:${nobody}`,
      KAFKA_TOPIC_PREFIX: `${run.kafkaTopicPrefix}nokafka.`
    })
    // Before the drill's finding none of these was exported until the topic was there: the
    // PaymentsWorkerNotReporting page said the consumers ran nowhere.
    assert.deepStrictEqual(yield* awaitSeries(consumersPort, ["consumer_lag_unavailable_total", "reconciliation_differences"]), [], consumers.output().slice(-1_000))
    let failed = 0
    for (let attempt = 0; attempt < 100 && failed === 0; attempt++) {
      if (attempt > 0) yield* Effect.sleep("200 millis")
      const line = (yield* scrape(consumersPort)).split("\n").find((text) => text.startsWith("consumer_lag_unavailable_total{consumer=\"webhooks\""))
      failed = Number(line?.split(" ").at(-1) ?? 0)
    }
    assert.isAbove(failed, 0, "each failed lag measurement counted")
    assert.match(consumers.output(), /"message":"cannot ensure the payments\.events topic yet".*"waiting":"the consumers: no event is consumed until then/u)
  })), { timeout: 60_000 })
