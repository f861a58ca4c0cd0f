// A real Prometheus (Debian's, started by this test on loopback, killed by its own pid) scrapes
// the real server's METRICS_PORT and loads ops/prometheus/alerts.yml: the target is up, the
// server's series are queryable, and every recording and alerting rule evaluates without error.
import { assert, layer } from "@effect/vitest"
import { Context, Effect, Layer, Schema } from "effect"
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { call } from "./support/Http.ts"
import { alertRulesPath } from "./support/PromQl.ts"
import { freePort } from "./support/ServerProcess.ts"
import { createMerchant, createPayment, newKey, testServerLayer } from "./support/TestServer.ts"

class PrometheusServer extends Context.Service<PrometheusServer, { readonly url: string; readonly output: () => string }>()("test/PrometheusServer") {}

/** Prometheus scraping `target` every second, rules evaluated every second; stopped (SIGKILL, by pid) at the end. */
const prometheusServer = (target: string) =>
  Effect.acquireRelease(
    Effect.gen(function* () {
      const port = yield* freePort
      const dir = mkdtempSync(join(tmpdir(), "pay-prometheus-"))
      const config = join(dir, "prometheus.yml")
      writeFileSync(config, [
        "global: { scrape_interval: 1s, evaluation_interval: 1s }",
        `rule_files: ["${alertRulesPath}"]`,
        "scrape_configs:",
        "  - job_name: payments-api",
        `    static_configs: [{ targets: ["${target}"] }]`,
        ""
      ].join("\n"))
      let output = ""
      const child = spawn("prometheus", [
        `--config.file=${config}`,
        `--storage.tsdb.path=${join(dir, "data")}`,
        `--web.listen-address=127.0.0.1:${port}`,
        "--storage.tsdb.retention.time=1h"
      ], { stdio: ["ignore", "pipe", "pipe"] })
      const keep = (chunk: Buffer) => { output = (output + chunk.toString("utf8")).slice(-16_000) }
      child.stdout.on("data", keep)
      child.stderr.on("data", keep)
      return { child, dir, url: `http://127.0.0.1:${port}`, output: () => output }
    }),
    ({ child, dir }) =>
      Effect.sync(() => {
        if (child.exitCode === null) child.kill("SIGKILL")
        rmSync(dir, { recursive: true, force: true })
      })
  )

const Live = Layer.unwrap(
  Effect.gen(function* () {
    const metricsPort = yield* freePort
    const server = testServerLayer({ env: { METRICS_PORT: String(metricsPort), RUNTIME_METRICS_INTERVAL_MS: "1000" } })
    const prometheus = yield* prometheusServer(`127.0.0.1:${metricsPort}`)
    return Layer.merge(server, Layer.succeed(PrometheusServer, { url: prometheus.url, output: prometheus.output }))
  })
)

const QueryAnswer = Schema.Struct({
  status: Schema.String,
  data: Schema.Struct({ result: Schema.Array(Schema.Struct({ metric: Schema.Record(Schema.String, Schema.String), value: Schema.Tuple([Schema.Number, Schema.String]) })) })
})
const RulesAnswer = Schema.Struct({
  status: Schema.String,
  data: Schema.Struct({
    groups: Schema.Array(Schema.Struct({
      name: Schema.String,
      rules: Schema.Array(Schema.Struct({ name: Schema.String, health: Schema.String, type: Schema.String, lastError: Schema.optional(Schema.String) }))
    }))
  })
})
const decodeQuery = Schema.decodeUnknownOption(Schema.fromJsonString(QueryAnswer))
const decodeRules = Schema.decodeUnknownOption(Schema.fromJsonString(RulesAnswer))

/** Polls every 500 ms, at most `attempts` times; the last value when none matched. */
const eventually = <A, E, R>(attempts: number, probe: Effect.Effect<A, E, R>, done: (a: A) => boolean) =>
  Effect.gen(function* () {
    let last = yield* probe
    for (let attempt = 1; attempt < attempts && !done(last); attempt++) {
      yield* Effect.sleep(500)
      last = yield* probe
    }
    return last
  })

layer(Live, { excludeTestServices: true, timeout: "150 seconds" })("a real Prometheus scrapes the server and evaluates the alert rules", (it) => {
  it.effect("target up, series queryable, every rule healthy after evaluation, nothing firing on a healthy server", () =>
    Effect.gen(function* () {
      const prometheus = yield* PrometheusServer
      const m = yield* createMerchant("Prometheus")
      for (let i = 0; i < 3; i++) assert.strictEqual((yield* createPayment(m, newKey())).status, 201)
      const query = (promql: string) =>
        call(prometheus.url, "GET", `/api/v1/query?query=${encodeURIComponent(promql)}`).pipe(
          Effect.map((answer) => (decodeQuery(answer.text)._tag === "Some" ? decodeQuery(answer.text) : undefined)),
          Effect.catch(() => Effect.succeed(undefined))
        )
      const valueOf = (promql: string) =>
        query(promql).pipe(Effect.map((answer) => (answer?._tag === "Some" ? Number(answer.value.data.result[0]?.value[1] ?? Number.NaN) : Number.NaN)))

      const up = yield* eventually(120, valueOf('up{job="payments-api"}'), (value) => value === 1)
      assert.strictEqual(up, 1, `target up; prometheus output:\n${prometheus.output().slice(-2_000)}`)
      const creates = yield* eventually(60, valueOf('sum(http_server_requests_total{route="/v1/payments",status="201"})'), (value) => value >= 3)
      assert.isAtLeast(creates, 3)
      assert.strictEqual(yield* eventually(60, valueOf('sum(payment_transitions_total{to_status="CREATED"})'), (v) => v >= 3), 3)

      // Every rule evaluated at least once (the recording group runs every 30 s) without error.
      const rules = call(prometheus.url, "GET", "/api/v1/rules").pipe(Effect.map((answer) => decodeRules(answer.text)))
      const healthy = yield* eventually(160, rules, (answer) =>
        answer._tag === "Some" && answer.value.data.groups.every((group) => group.rules.every((rule) => rule.health === "ok")))
      assert.strictEqual(healthy._tag, "Some")
      if (healthy._tag === "Some") {
        const all = healthy.value.data.groups.flatMap((group) => group.rules)
        assert.isAtLeast(all.filter((rule) => rule.type === "alerting").length, 10)
        assert.deepStrictEqual(all.filter((rule) => rule.health !== "ok").map((rule) => `${rule.name}: ${rule.health} ${rule.lastError ?? ""}`), [])
      }
      // The recorded error ratio exists (no 5xx: 0), and a healthy server fires nothing.
      assert.strictEqual(yield* valueOf("payments:http_error_ratio:rate5m"), 0)
      const firing = yield* query('ALERTS{alertstate="firing"}')
      assert.deepStrictEqual(firing?._tag === "Some" ? firing.value.data.result.map((r) => r.metric["alertname"]) : ["query failed"], [])
    }))
})
