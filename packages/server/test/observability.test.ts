// The operator's view of one request, against the real server process: the correlation id is
// answered on every response and written on its log lines, and one trace id runs from the HTTP
// request through the use case and its SQL transaction to the outbox publication, the Kafka
// record's headers, and a consumer that continues it (spans exported over OTLP/HTTP to a receiver
// this test starts).
import { assert, layer } from "@effect/vitest"
import { continueFromRecord, CurrentCorrelationId, decodeRows, postgresLayer } from "@pay/infra"
import { shortId, testRun } from "@pay/testkit"
import { Context, Effect, Layer, Logger, Redacted, Schema } from "effect"
import { SqlClient } from "effect/sql"
import { execFile } from "node:child_process"
import { type OtlpReceiver, otlpReceiver, type ReceivedSpan, stringAttribute } from "./support/OtlpReceiver.ts"
import { call } from "./support/Http.ts"
import { promtool, samples, valueOf } from "./support/Prometheus.ts"
import { freePort } from "./support/ServerProcess.ts"
import { dashboardExpressions, metricNamesIn, ruleExpressions } from "./support/PromQl.ts"
import { createMerchant, createPayment, newKey, TestServer, testServerLayer } from "./support/TestServer.ts"

class Receiver extends Context.Service<Receiver, OtlpReceiver & { readonly metricsUrl: string }>()("test/Receiver") {}

// The server runs its consumers (their series are read by the alert rules) on a topic prefix of
// this file's own: they read only this server's events (support/TestServer.ts).
const topicPrefix = `${testRun().kafkaTopicPrefix}${shortId()}.`

const Live = Layer.unwrap(
  Effect.gen(function* () {
    const receiver = yield* otlpReceiver
    const metricsPort = yield* freePort
    const server = testServerLayer({
      env: {
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        OTEL_EXPORT_INTERVAL_MS: "200",
        HTTP_ACCESS_LOG: "all",
        METRICS_PORT: String(metricsPort),
        RUNTIME_METRICS_INTERVAL_MS: "500",
        LEDGER_VERIFY_INTERVAL_MS: "1000",
        KAFKA_TOPIC_PREFIX: topicPrefix,
        CONSUMERS_ENABLED: "true",
        CONSUMER_LAG_INTERVAL_MS: "200",
        CONSUMER_RECONCILE_INTERVAL_MS: "1000"
      }
    })
    return Layer.merge(server, Layer.succeed(Receiver, { ...receiver, metricsUrl: `http://127.0.0.1:${metricsPort}` }))
  })
)

/** Polls `probe` every 200 ms, at most `attempts` times; the last value when none matched. */
const eventually = <A, E, R>(attempts: number, probe: Effect.Effect<A, E, R>, done: (a: A) => boolean) =>
  Effect.gen(function* () {
    let last = yield* probe
    for (let attempt = 1; attempt < attempts && !done(last); attempt++) {
      yield* Effect.sleep(200)
      last = yield* probe
    }
    return last
  })

const LogLine = Schema.Struct({
  message: Schema.Unknown,
  level: Schema.String,
  timestamp: Schema.String,
  trace_id: Schema.optional(Schema.String),
  span_id: Schema.optional(Schema.String),
  correlation_id: Schema.optional(Schema.String),
  route: Schema.optional(Schema.String),
  status: Schema.optional(Schema.String),
  merchant_id: Schema.optional(Schema.String),
  payment_id: Schema.optional(Schema.String)
})
const decodeLogLine = Schema.decodeUnknownOption(Schema.fromJsonString(LogLine))
const logLines = (output: string) =>
  output.split("\n").flatMap((line) => {
    const decoded = decodeLogLine(line)
    return decoded._tag === "Some" ? [decoded.value] : []
  })

const ChangeRow = Schema.Struct({ correlation_id: Schema.String, traceparent: Schema.NullOr(Schema.String) })
const OutboxRow = Schema.Struct({ headers: Schema.Record(Schema.String, Schema.String), published: Schema.Boolean, topic_prefix: Schema.Null })

/** The Kafka record of `paymentId`'s creation, read back with kcat (an independent client). */
const kcatHeaders = (brokers: string, topic: string, paymentId: string) =>
  Effect.callback<Record<string, string> | undefined>((resume) => {
    const child = execFile(
      "kcat",
      ["-b", brokers, "-C", "-t", topic, "-o", "beginning", "-e", "-J", "-q", "-X", "broker.address.family=v4"],
      { timeout: 30_000, killSignal: "SIGKILL", maxBuffer: 64 * 1024 * 1024 },
      (_error, stdout) => {
        for (const line of stdout.split("\n")) {
          if (!line.includes(paymentId)) continue
          const record: { key?: string; headers?: Array<string> } = JSON.parse(line)
          if (record.key !== paymentId) continue
          const headers: Record<string, string> = {}
          const flat = record.headers ?? []
          for (let i = 0; i + 1 < flat.length; i += 2) headers[String(flat[i])] = String(flat[i + 1])
          return resume(Effect.succeed(headers))
        }
        resume(Effect.succeed(undefined))
      }
    )
    return Effect.sync(() => child.kill("SIGKILL"))
  })

const spansOf = (spans: ReadonlyArray<ReceivedSpan>, traceId: string) => spans.filter((span) => span.traceId === traceId)

layer(Live, { excludeTestServices: true, timeout: "90 seconds" })("observability (real server process, OTLP receiver)", (it) => {
  it.effect("X-Request-Id is answered on every response: kept when acceptable, generated otherwise", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const m = yield* createMerchant("Correlation")
      const given = `req-${crypto.randomUUID()}`
      const created = yield* createPayment(m, newKey(), undefined, { headers: { "x-request-id": given } })
      assert.strictEqual(created.status, 201, created.text)
      assert.strictEqual(created.headers.get("x-request-id"), given)
      const answers = [
        yield* server.request("GET", "/v1/payments", { headers: { "x-request-id": `${given}-401` } }),
        yield* server.request("GET", "/no/such/route", { headers: { "x-request-id": `${given}-404` } }),
        yield* server.request("POST", "/v1/payments", { apiKey: m.apiKey, idempotencyKey: newKey(), rawBody: "{", headers: { "x-request-id": `${given}-400` } })
      ]
      assert.deepStrictEqual(answers.map((a) => [a.status, a.headers.get("x-request-id")]), [[401, `${given}-401`], [404, `${given}-404`], [400, `${given}-400`]])
      for (const refused of ["has space", "x".repeat(201), "é"]) {
        const answer = yield* server.request("GET", "/health/live", { headers: { "x-request-id": refused } })
        const answered = answer.headers.get("x-request-id") ?? ""
        assert.match(answered, /^[0-9a-f-]{36}$/, `replaced ${JSON.stringify(refused.slice(0, 20))}`)
      }
      const generated = yield* server.request("GET", "/health/live")
      assert.match(generated.headers.get("x-request-id") ?? "", /^[0-9a-f-]{36}$/)
      // A generated id is the one stored with the change too (one id, whoever reads it).
      const anonymous = yield* createPayment(m, newKey())
      const generatedId = anonymous.headers.get("x-request-id") ?? ""
      assert.match(generatedId, /^[0-9a-f-]{36}$/)
      const sql = yield* SqlClient.SqlClient
      const [stored] = yield* decodeRows(ChangeRow)(sql`
        SELECT correlation_id, traceparent FROM payment_status_history WHERE payment_id = ${String(JSON.parse(anonymous.text).id)}`)
      assert.strictEqual(stored?.correlation_id, generatedId)
      // Every request's access line carries its id; the 401/404/400 too.
      // Written after the response is sent: polled.
      const lines = yield* eventually(50, Effect.sync(() => logLines(server.process.output())), (all) => all.some((line) => line.correlation_id === `${given}-400`))
      for (const id of [given, `${given}-401`, `${given}-404`, `${given}-400`]) {
        assert.isTrue(lines.some((line) => line.correlation_id === id && line.message === "http request"), `a log line for ${id}`)
      }
      const notFound = lines.find((line) => line.correlation_id === `${given}-404`)
      assert.deepStrictEqual([notFound?.level, notFound?.route, notFound?.status], ["INFO", "unmatched", "404"])
      const create = lines.find((line) => line.correlation_id === given)
      assert.deepStrictEqual([create?.route, create?.status], ["/v1/payments", "201"])
      // The domain ids known to the request are on its access line.
      assert.deepStrictEqual([create?.merchant_id, create?.payment_id], [m.merchantId, JSON.parse(created.text).id])
      // The merchant's API key was sent on every request above: it is never written to the log.
      assert.notInclude(server.process.output(), m.apiKey)
      assert.notInclude(server.process.output(), m.apiKey.slice(-16))
    }))

  it.effect("an API key pasted into the query or the path reaches no span and no log line: url.* redacted, the path id redacted on the access line", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const receiver = yield* Receiver
      const m = yield* createMerchant("Pasted key")
      const given = `pasted-${crypto.randomUUID()}`
      const inQuery = yield* server.request("GET", `/v1/payments?limit=2&api_key=${m.apiKey}`, { apiKey: m.apiKey, headers: { "x-request-id": `${given}-query` } })
      const inPath = yield* server.request("GET", `/v1/payments/${m.apiKey}`, { apiKey: m.apiKey, headers: { "x-request-id": `${given}-path` } })
      // Encoded, after a letter or a digit: `Bearer%20sk_…` (no word boundary before `sk_`).
      const encoded = yield* server.request("GET", `/v1/payments?auth=Bearer%20${m.apiKey}`, { apiKey: m.apiKey, headers: { "x-request-id": `${given}-encoded` } })
      assert.strictEqual(encoded.status, 400, encoded.text)
      assert.deepStrictEqual([inQuery.status, inPath.status], [400, 404], `${inQuery.text} ${inPath.text}`)
      const spans = yield* eventually(100, Effect.sync(() => receiver.spans()), (all) =>
        [`${given}-query`, `${given}-path`, `${given}-encoded`].every((id) => all.some((span) => stringAttribute(span, "correlation_id") === id)))
      const requestSpan = (id: string) => spans.find((span) => stringAttribute(span, "correlation_id") === id && span.kind === 2)
      const query = requestSpan(`${given}-query`)
      assert.strictEqual(stringAttribute(query, "url.query"), "limit=2&api_key=sk_test_REDACTED")
      assert.match(stringAttribute(query, "url.full") ?? "", /\/v1\/payments\?limit=2&api_key=sk_test_REDACTED$/)
      const path = requestSpan(`${given}-path`)
      assert.strictEqual(stringAttribute(path, "url.path"), "/v1/payments/sk_test_REDACTED")
      assert.match(stringAttribute(path, "url.full") ?? "", /\/v1\/payments\/sk_test_REDACTED$/)
      assert.strictEqual(stringAttribute(requestSpan(`${given}-encoded`), "url.query"), "auth=Bearer%20sk_test_REDACTED")
      assert.notInclude(JSON.stringify(spans), m.apiKey.slice(8), "no span attribute anywhere carries the key")
      const lines = yield* eventually(50, Effect.sync(() => logLines(server.process.output())), (all) => all.some((line) => line.correlation_id === `${given}-path`))
      assert.strictEqual(lines.find((line) => line.correlation_id === `${given}-path`)?.payment_id, "sk_test_REDACTED")
      assert.notInclude(server.process.output(), m.apiKey.slice(8))
    }))

  it.effect("one trace id: request → use case → SQL statement → outbox row → publish → Kafka header → consumer", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const receiver = yield* Receiver
      const sql = yield* SqlClient.SqlClient
      const m = yield* createMerchant("Tracing")
      const correlationId = `trace-${crypto.randomUUID()}`
      const created = yield* createPayment(m, newKey(), undefined, { headers: { "x-request-id": correlationId } })
      assert.strictEqual(created.status, 201, created.text)
      const paymentId = String(JSON.parse(created.text).id)

      const [change] = yield* decodeRows(ChangeRow)(sql`
        SELECT correlation_id, traceparent FROM payment_status_history WHERE payment_id = ${paymentId}`)
      assert.strictEqual(change?.correlation_id, correlationId)
      const traceId = change?.traceparent?.split("-")[1] ?? ""
      assert.match(traceId, /^[0-9a-f]{32}$/, "the history row stores the request's trace context")

      const outbox = yield* eventually(100, decodeRows(OutboxRow)(sql`
        SELECT headers, published_at IS NOT NULL AS published, NULL AS topic_prefix FROM outbox_events WHERE aggregate_id = ${paymentId}`),
        (rows) => rows.every((row) => row.published) && rows.length > 0)
      assert.strictEqual(outbox[0]?.headers["correlation_id"], correlationId)
      assert.strictEqual(outbox[0]?.headers["traceparent"], change?.traceparent)
      assert.isTrue(outbox[0]?.published, "published")

      // The spans reach the receiver within a few export intervals: the send span, and its batch
      // span, which ends after it and may come in a later export (waiting for the send alone
      // failed once under a parallel run).
      const spans = yield* eventually(100, Effect.sync(() => receiver.spans()), (all) => {
        const sent = all.find((span) => span.name === "OutboxPublisher.send" && (span.links ?? []).some((link) => link.traceId === traceId))
        return sent !== undefined && all.some((span) => span.name === "OutboxPublisher.publishBatch" && span.traceId === sent.traceId)
      })
      assert.deepStrictEqual(receiver.rejected(), [])
      const trace = spansOf(spans, traceId)
      const names = new Set(trace.map((span) => span.name))
      // A create is one statement (key, payment, history row, outbox row: PaymentRepository.createGated).
      for (const name of ["POST", "PaymentUseCases.createAtOnce", "IdempotencyKeys.runAtOnce", "PaymentRepository.createGated"]) {
        assert.isTrue(names.has(name), `span ${name} in the request's trace: ${[...names].join(", ")}`)
      }
      const gated = trace.find((span) => span.name === "PaymentRepository.createGated")
      assert.isTrue(
        trace.some((span) => span.kind === 3 /* client */ && span.parentSpanId === gated?.spanId),
        "the create's SQL statement as a client span under it"
      )
      const server_span = trace.find((span) => span.name === "POST" && span.kind === 2)
      assert.isDefined(server_span, "the HTTP server span")
      assert.strictEqual(change?.traceparent?.split("-")[1], server_span?.traceId)
      const send = spans.find((span) => span.name === "OutboxPublisher.send" && (span.links ?? []).some((link) => link.traceId === traceId))
      const link = send?.links?.find((l) => l.traceId === traceId)
      assert.isTrue(trace.some((span) => span.spanId === link?.spanId), "the publish span links to a span of the request's trace")
      // Each publish batch is a trace of its own, not a child of the publisher's process-long span.
      const batch = spans.find((span) => span.name === "OutboxPublisher.publishBatch" && span.traceId === send?.traceId)
      assert.isDefined(batch, "the send's batch span is in the same trace")
      assert.strictEqual(batch?.parentSpanId ?? "", "", "the batch span is the root of its trace")

      // The Kafka record carries it; a consumer continues the trace and logs the correlation id.
      const run = testRun()
      const headers = yield* eventually(50, kcatHeaders(run.kafkaBrokers, `${topicPrefix}payments.events`, paymentId), (h) => h !== undefined)
      assert.strictEqual(headers?.["correlation_id"], correlationId)
      assert.strictEqual(headers?.["traceparent"], change?.traceparent)
      const logged: Array<unknown> = []
      const consumed = yield* Effect.gen(function* () {
        yield* Effect.logInfo("consumed")
        const span = yield* Effect.currentSpan
        return { traceId: span.traceId, correlationId: yield* CurrentCorrelationId }
      }).pipe(
        continueFromRecord("test.consume", headers ?? {}),
        Effect.provide(Logger.layer([Logger.make((options) => { logged.push(Logger.formatStructured.log(options).annotations) })]))
      )
      assert.deepStrictEqual(consumed, { traceId, correlationId })
      assert.deepStrictEqual(logged, [{ correlation_id: correlationId }])

      // The settlement projection applies events a slice (one transaction) at a time: the slice's
      // span, with its consumer, partition and offsets, links to the request's trace.
      const linksTo = (span: ReceivedSpan) => span.name === "consume batch" && (span.links ?? []).some((link) => link.traceId === traceId)
      const sliced = yield* eventually(100, Effect.sync(() => receiver.spans()), (all) => all.some(linksTo))
      const slice = sliced.find(linksTo)
      assert.isDefined(slice, "a consume batch span links to the request's trace")
      assert.strictEqual(slice?.kind, 5 /* consumer */)
      assert.strictEqual(stringAttribute(slice, "messaging.consumer.group.name"), "settlement.g1")
      assert.strictEqual(stringAttribute(slice, "messaging.destination.name"), `${topicPrefix}payments.events`)
      assert.match(stringAttribute(slice, "messaging.kafka.offset.first") ?? "", /^\d+$/)

      // The request's log lines carry the same ids.
      const lines = logLines(server.process.output()).filter((line) => line.correlation_id === correlationId)
      assert.isTrue(lines.length > 0 && lines.every((line) => line.trace_id === traceId), JSON.stringify(lines).slice(0, 500))
    }))

  it.effect("/metrics: valid Prometheus exposition (promtool) with RED, payment, idempotency, acquirer, outbox and runtime series", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const m = yield* createMerchant("Metrics")
      const key = newKey()
      const created = yield* createPayment(m, key, { amount: 123_456, currency: "JPY", payment_method: "pm_card_visa" })
      assert.strictEqual(created.status, 201, created.text)
      const replay = yield* createPayment(m, key, { amount: 123_456, currency: "JPY", payment_method: "pm_card_visa" })
      assert.strictEqual(replay.status, 201)
      const reused = yield* createPayment(m, key, { amount: 1, currency: "JPY", payment_method: "pm_card_visa" })
      assert.strictEqual(reused.status, 422)
      const id = String(JSON.parse(created.text).id)
      const post = (path: string) => server.request("POST", path, { apiKey: m.apiKey, idempotencyKey: newKey() })
      assert.strictEqual((yield* post(`/v1/payments/${id}/authorize`)).status, 200)
      assert.strictEqual((yield* post(`/v1/payments/${id}/settle`)).status, 200)

      // The HTTP edge's own routes (a problem type's page, the document) are labelled by their
      // template too; a problem code that is no page is still the page route's 404.
      assert.strictEqual((yield* server.request("GET", "/docs/problems/payment_not_found")).status, 200)
      assert.strictEqual((yield* server.request("GET", "/docs/problems/no_such_code")).status, 404)
      assert.strictEqual((yield* server.request("GET", "/openapi.json")).status, 200)

      // Another process of the platform on the same database (this test process, with the
      // platform's default application_name) holding 12 connections: the server's
      // db_client_connections counts its own (at most its pool of 8), not theirs. Every process
      // used to connect as "payments-platform", and each counted all of them.
      const otherProcess = yield* Layer.build(postgresLayer({ url: Redacted.make((yield* TestServer).database.url), maxConnections: 12 }))
      const otherSql = Context.get(otherProcess, SqlClient.SqlClient)
      yield* Effect.all(Array.from({ length: 12 }, () => otherSql`SELECT pg_sleep(0.05)`), { concurrency: 12, discard: true })
      yield* Effect.sleep(1_200)

      // METRICS_PORT set: /metrics on its own listener only, not where merchants call.
      const { metricsUrl } = yield* Receiver
      assert.strictEqual((yield* server.request("GET", "/metrics")).status, 404)
      const scrape = yield* eventually(50, call(metricsUrl, "GET", "/metrics"), (answer) =>
        ["db_client_connections", "consumer_lag_records", "reconciliation_differences"].every((name) => answer.text.includes(name)))
      assert.strictEqual(scrape.status, 200)
      const checked = yield* promtool(["check", "metrics"], scrape.text)
      assert.strictEqual(checked.code, 0, `promtool check metrics:\n${checked.output}`)
      const all = samples(scrape.text)
      const has = (name: string, labels: Record<string, string> = {}) => valueOf(all, name, labels)
      assert.strictEqual(has("payment_transitions_total", { from_status: "none", to_status: "CREATED", currency: "JPY" }), 1)
      assert.strictEqual(has("payment_transitions_total", { from_status: "CREATED", to_status: "AUTHORIZED", currency: "JPY" }), 1)
      assert.strictEqual(has("payment_transitions_total", { from_status: "AUTHORIZED", to_status: "SETTLED", currency: "JPY" }), 1)
      assert.strictEqual(has("payment_settled_amount_minor_total", { currency: "JPY" }), 123_456)
      assert.strictEqual(has("idempotency_requests_total", { outcome: "replayed" }), 1)
      assert.strictEqual(has("idempotency_requests_total", { outcome: "reused" }), 1)
      assert.strictEqual(has("acquirer_calls_total", { operation: "authorize", outcome: "approved" }), 1)
      assert.strictEqual(has("acquirer_calls_total", { operation: "capture", outcome: "approved" }), 1)
      assert.isAtLeast(has("http_server_requests_total", { method: "POST", route: "/v1/payments", status: "201" }) ?? 0, 2)
      assert.strictEqual(has("http_server_requests_total", { method: "POST", route: "/v1/payments", status: "422" }), 1)
      assert.isAtLeast(has("http_server_request_duration_seconds_count", { route: "/v1/payments/:id/settle", status: "200" }) ?? 0, 1)
      assert.strictEqual(has("http_server_requests_total", { method: "GET", route: "/docs/problems/:code", status: "200" }), 1)
      assert.strictEqual(has("http_server_requests_total", { method: "GET", route: "/docs/problems/:code", status: "404" }), 1)
      assert.strictEqual(has("http_server_requests_total", { method: "GET", route: "/openapi.json", status: "200" }), 1)
      for (const name of ["outbox_backlog_rows", "outbox_oldest_unpublished_age_seconds", "nodejs_heap_used_bytes", "process_resident_memory_bytes", "nodejs_eventloop_delay_p99_seconds"]) {
        assert.isDefined(has(name), `${name} exported`)
      }
      assert.isDefined(has("db_client_connections", { pool: "api", state: "idle" }))
      assert.strictEqual(has("db_client_connections_max", { pool: "api" }), 8, "DATABASE_POOL_SIZE of the test server")
      const connectionStates = ["active", "idle", "idle in transaction", "idle in transaction (aborted)"]
      const counted = (pool: string) => connectionStates.reduce((sum, state) => sum + (has("db_client_connections", { pool, state }) ?? 0), 0)
      assert.isAtMost(counted("api"), 8, "the server's own connections, not the other process's 12")
      // The consumers' pool inside the server (pay_consumer, CONSUMERS_DATABASE_POOL_SIZE): measured
      // apart from the API's. It was measured nowhere (its connections were `unknown` in the API's).
      assert.strictEqual(has("db_client_connections_max", { pool: "consumers" }), 10, "CONSUMERS_DATABASE_POOL_SIZE's default")
      assert.isAtLeast(counted("consumers"), 1, "the consumers hold connections of their own pool")
      assert.isAtMost(counted("consumers"), 10)
      assert.strictEqual(has("ledger_verify_discrepancies", { check: "balance_mismatch" }), 0)
      assert.isAbove(has("ledger_verify_last_success_timestamp_seconds") ?? 0, Date.now() / 1_000 - 60)

      // The alert rules and the dashboard read only series this server exports (or Prometheus'
      // own `up`, or the rules' recorded series).
      const exported = new Set(all.map((sample) => sample.name))
      const { exprs, recorded } = ruleExpressions()
      const known = (name: string) => exported.has(name) || recorded.includes(name) || name === "up"
      for (const expr of [...exprs, ...dashboardExpressions()]) {
        for (const name of metricNamesIn(expr)) assert.isTrue(known(name), `${name} (in ${expr.trim().slice(0, 120)}) is exported`)
      }
    }))

  it.effect("a balance edited behind the ledger's triggers shows in ledger_verify_discrepancies (what LedgerDiscrepancy pages on), and clears when repaired", () =>
    Effect.gen(function* () {
      const { metricsUrl } = yield* Receiver
      const sql = yield* SqlClient.SqlClient
      const discrepancies = call(metricsUrl, "GET", "/metrics").pipe(
        Effect.map((answer) => valueOf(samples(answer.text), "ledger_verify_discrepancies", { check: "balance_mismatch" }))
      )
      // A settled payment: there are balances. Then a superuser switches triggers off.
      const server = yield* TestServer
      const m = yield* createMerchant("Ledger audit")
      const created = yield* createPayment(m, newKey())
      const id = String(JSON.parse(created.text).id)
      for (const step of ["authorize", "settle"]) {
        const answer = yield* server.request("POST", `/v1/payments/${id}/${step}`, { apiKey: m.apiKey, idempotencyKey: newKey() })
        assert.strictEqual(answer.status, 200, answer.text)
      }
      const edit = (delta: bigint) =>
        sql.withTransaction(Effect.gen(function* () {
          yield* sql`SET LOCAL session_replication_role = replica`
          yield* sql`UPDATE account_balances SET balance_minor = balance_minor + ${delta}
                     WHERE account_id = (SELECT account_id FROM account_balances ORDER BY account_id LIMIT 1)`
        }))
      yield* edit(1n)
      const seen = yield* eventually(100, discrepancies, (value) => (value ?? 0) > 0)
      yield* edit(-1n)
      assert.strictEqual(seen, 1, "one balance_mismatch reported")
      const cleared = yield* eventually(100, discrepancies, (value) => value === 0)
      assert.strictEqual(cleared, 0)
    }))
})
