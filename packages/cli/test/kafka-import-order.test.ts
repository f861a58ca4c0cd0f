import { assert, it } from "@effect/vitest"
import { defaultKafkaAdminTimeouts, KafkaAdmin } from "@pay/infra"
import { OutboxTopics } from "@pay/outbox/OutboxTopics"
import { acquireTestDatabase, shortId, testRun } from "@pay/testkit"
import { Effect } from "effect"
import { execFile, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { describe } from "vitest"

const run = testRun()
const repositoryRoot = fileURLToPath(new URL("../../..", import.meta.url))
const startOrder = fileURLToPath(new URL("./fixtures/start-order.ts", import.meta.url))

/** The CLI with the start-order probe loaded: exit code, and what it resolved and connected, in order. */
const tracedCli = (env: Readonly<Record<string, string>>, args: ReadonlyArray<string>) =>
  Effect.callback<{ readonly exitCode: number; readonly stderr: string; readonly order: ReadonlyArray<string> }>((resume) => {
    const child = execFile(
      process.execPath,
      ["--import", startOrder, "packages/cli/src/main.ts", ...args],
      { cwd: repositoryRoot, env: { ...process.env, ...env }, timeout: 30_000, killSignal: "SIGKILL" },
      (error, _stdout, stderr) => {
        const exitCode = error === null ? 0 : typeof error.code === "number" ? error.code : -1
        const line = stderr.split("\n").find((text) => text.startsWith("START-ORDER ")) ?? "START-ORDER []"
        const parsed: unknown = JSON.parse(line.slice("START-ORDER ".length))
        const order = Array.isArray(parsed) ? parsed.map(String) : []
        resume(Effect.succeed({ exitCode, stderr, order }))
      }
    )
    return Effect.sync(() => {
      if (child.exitCode === null) child.kill("SIGKILL")
    })
  })

/**
 * A long-running process (server, consumers) with the probe loaded, stopped with SIGTERM once it
 * logged `ready` on stdout (bounded: 30 s): what it resolved and connected, in order.
 */
const tracedProcess = (env: Readonly<Record<string, string>>, main: string, ready: string) =>
  Effect.callback<{ readonly output: string; readonly order: ReadonlyArray<string> }>((resume) => {
    const child = spawn(process.execPath, ["--import", startOrder, main], { cwd: repositoryRoot, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] })
    let output = ""
    let stderr = ""
    const stopTimer = setTimeout(() => child.kill("SIGTERM"), 30_000)
    child.stdout.on("data", (chunk: Buffer) => {
      output = (output + chunk.toString("utf8")).slice(-20_000)
      if (output.includes(ready)) child.kill("SIGTERM")
    })
    child.stderr.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString("utf8")).slice(-20_000)
    })
    child.on("exit", () => {
      clearTimeout(stopTimer)
      const line = stderr.split("\n").find((text) => text.startsWith("START-ORDER ")) ?? "START-ORDER []"
      const parsed: unknown = JSON.parse(line.slice("START-ORDER ".length))
      resume(Effect.succeed({ output: `${output}\n${stderr}`.slice(-4_000), order: Array.isArray(parsed) ? parsed.map(String) : [] }))
    })
    return Effect.sync(() => {
      clearTimeout(stopTimer)
      if (child.exitCode === null) child.kill("SIGKILL")
    })
  })

// Importing the Kafka library blocks the event loop (~0.5 s, seconds on a loaded machine): a
// Postgres connection begun before it saw its 5 s connect timer fire first ("Connection timed
// out" from a healthy database, CI at 3df9480).
describe("start-up order: the Kafka library before any connection, or not at all", () => {
  it.live("a database-only command (reconcile) never imports the Kafka library; a broker command (consumers lag) imports it before its first connection", () =>
    Effect.gen(function* () {
      const database = yield* acquireTestDatabase
      const prefix = `${run.kafkaTopicPrefix}${shortId()}.`
      yield* OutboxTopics.ensure(prefix).pipe(
        Effect.provide(KafkaAdmin.layerWith({ brokers: run.kafkaBrokers, clientId: "pay-test-cli-admin", ...defaultKafkaAdminTimeouts }))
      )
      const env = { DATABASE_URL: database.url, KAFKA_BROKERS: run.kafkaBrokers, KAFKA_TOPIC_PREFIX: prefix }

      const reconcile = yield* tracedCli(env, ["reconcile"])
      assert.strictEqual(reconcile.exitCode, 0, reconcile.stderr)
      assert.include(reconcile.order, "connect", reconcile.stderr)
      assert.notInclude(reconcile.order, "kafka-library")

      const lag = yield* tracedCli(env, ["consumers", "lag"])
      assert.strictEqual(lag.exitCode, 0, lag.stderr)
      assert.strictEqual(lag.order[0], "kafka-library", JSON.stringify(lag.order))
      assert.include(lag.order, "connect")
    }).pipe(Effect.scoped), { timeout: 90_000 })

  it.live("the server and the consumers process import the Kafka library before their first connection (a server used to exit at start on a loaded machine)", () =>
    Effect.gen(function* () {
      const database = yield* acquireTestDatabase
      const prefix = `${run.kafkaTopicPrefix}${shortId()}.`
      const env = { DATABASE_URL: database.url, KAFKA_BROKERS: run.kafkaBrokers, KAFKA_TOPIC_PREFIX: prefix, PORT: "0", METRICS_PORT: "" }
      const server = yield* tracedProcess(env, "packages/server/src/main.ts", "outbox publisher started")
      assert.strictEqual(server.order[0], "kafka-library", server.output)
      assert.include(server.order, "connect")
      const consumers = yield* tracedProcess(env, "packages/consumers/src/main.ts", "consumer subscribed")
      assert.strictEqual(consumers.order[0], "kafka-library", consumers.output)
      assert.include(consumers.order, "connect")
    }).pipe(Effect.scoped), { timeout: 90_000 })
})
