// The consumers' own process, as a process manager sees it. A clean stop on SIGTERM used to exit
// 130 (runMain's code for an interruption: systemd without SuccessExitStatus=130 records every
// deploy as a failure); started with the server's METRICS_PORT it died with an empty
// `ServeError:` in Effect's pretty format, and a setting out of bounds the same way, so a log
// pipeline parsing JSON dropped exactly the line that said why.
import { assert, it } from "@effect/vitest"
import { acquireTestDatabase, testDatabaseUrlAsRole } from "@pay/testkit"
import { freePort, launchChild } from "@pay/testkit/ChildProcess"
import { Effect, Schema } from "effect"
import { createServer, type Server } from "node:net"
import { describe } from "vitest"
import { freshTopics, kafkaTestClients, run } from "./support.ts"

const ErrorLine = Schema.fromJsonString(Schema.Struct({ timestamp: Schema.String, level: Schema.String, message: Schema.String, error: Schema.String }))
const LogLine = Schema.fromJsonString(Schema.Struct({ level: Schema.String, message: Schema.String }))

/** Every line printed is a JSON log line; the failure's line, decoded. */
const failureLine = (output: string) => {
  const lines = output.split("\n").filter((line) => line.trim() !== "")
  for (const line of lines) assert.isTrue(Schema.decodeUnknownOption(LogLine)(line)._tag === "Some", `not a JSON log line: ${line.slice(0, 300)}`)
  const failures = lines.flatMap((line) => {
    const decoded = Schema.decodeUnknownOption(ErrorLine)(line)
    return decoded._tag === "Some" && decoded.value.message === "consumers process failed" ? [decoded.value] : []
  })
  assert.strictEqual(failures.length, 1, output.slice(-2_000))
  return failures[0]
}

/** A listener holding `port` on loopback until the scope closes (the server's metrics listener, say). */
const holdPort = (port: number) =>
  Effect.acquireRelease(
    Effect.callback<Server>((resume) => {
      const server = createServer()
      server.listen(port, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) => Effect.callback<void>((resume) => void server.close(() => resume(Effect.void)))
  )

describe("the consumers' process: exit codes and start-up failures", () => {
  it.live("a SIGTERM stop, after the consumers subscribed, exits 0", () =>
    Effect.scoped(Effect.gen(function* () {
      const database = yield* acquireTestDatabase
      const topics = yield* freshTopics
      const child = launchChild({
        script: "packages/consumers/src/main.ts",
        label: "consumers",
        env: { DATABASE_URL: database.url, DATABASE_POOL_SIZE: "4", KAFKA_BROKERS: run.kafkaBrokers, KAFKA_TOPIC_PREFIX: topics.prefix },
        outputKept_chars: 20_000
      })
      yield* Effect.addFinalizer(() => child.stop)
      yield* child.awaitOutput(["consumer subscribed", "settlement.g1"], 30_000)
      yield* child.awaitOutput(["consumer subscribed", "webhooks"], 30_000)
      yield* child.signal("SIGTERM")
      assert.isTrue(yield* child.exitedWithin(20_000), child.output().slice(-2_000))
      assert.deepStrictEqual(child.exit(), { code: 0, signal: null }, child.output().slice(-2_000))
      // The log says it stopped (a killed process says nothing): one INFO line, the last.
      const lines = child.output().split("\n").filter((line) => line.trim().startsWith("{"))
      assert.include(lines.at(-1) ?? "", '"message":"consumers process stopped"', child.output().slice(-2_000))
      assert.include(lines.at(-1) ?? "", '"level":"INFO"')
    }).pipe(Effect.provide(kafkaTestClients("process-exit")))), { timeout: 90_000 })

  it.live("METRICS_PORT taken (the server's): exit 1 with one JSON line naming the port and what to set; a setting out of bounds: a JSON line too", () =>
    Effect.scoped(Effect.gen(function* () {
      const database = yield* acquireTestDatabase
      const port = yield* freePort
      yield* holdPort(port)
      const env = { DATABASE_URL: database.url, DATABASE_POOL_SIZE: "2", KAFKA_BROKERS: run.kafkaBrokers, KAFKA_TOPIC_PREFIX: `${run.kafkaTopicPrefix}exit.` }
      const taken = launchChild({ script: "packages/consumers/src/main.ts", label: "consumers", env: { ...env, METRICS_PORT: String(port) }, outputKept_chars: 20_000 })
      yield* Effect.addFinalizer(() => taken.stop)
      assert.isTrue(yield* taken.exitedWithin(30_000), taken.output().slice(-2_000))
      assert.strictEqual(taken.exit()?.code, 1, taken.output().slice(-2_000))
      const line = failureLine(taken.output())
      assert.strictEqual(line?.level, "ERROR")
      assert.include(line?.error, `METRICS_PORT=${port}`)
      assert.include(line?.error, `127.0.0.1:${port}`)
      assert.include(line?.error, "the port is taken")
      assert.include(line?.error, "Set METRICS_PORT to a free port")

      const outOfBounds = launchChild({ script: "packages/consumers/src/main.ts", label: "consumers", env: { ...env, CONSUMER_BATCH_SIZE: "0" }, outputKept_chars: 20_000 })
      yield* Effect.addFinalizer(() => outOfBounds.stop)
      assert.isTrue(yield* outOfBounds.exitedWithin(30_000), outOfBounds.output().slice(-2_000))
      assert.strictEqual(outOfBounds.exit()?.code, 1, outOfBounds.output().slice(-2_000))
      assert.include(failureLine(outOfBounds.output())?.error, "CONSUMER_BATCH_SIZE must be an integer between 1 and 1000")
    })), { timeout: 90_000 })
})

describe("the consumers' process: a database role it cannot use", () => {
  it.live("CONSUMERS_DATABASE_URL naming a role that does not exist, or the API's role (no grants on the consumers' tables): exit 1 with one line naming the setting and the reason, not a process 'ready' whose loops retry for ever", () =>
    Effect.scoped(Effect.gen(function* () {
      const database = yield* acquireTestDatabase
      for (const [role, reason] of [["pay_no_such_role", 'role "pay_no_such_role" does not exist'], ["pay_app", "the role pay_app may not write processed_events"]] as const) {
        const child = launchChild({
          script: "packages/consumers/src/main.ts",
          label: "consumers",
          env: { CONSUMERS_DATABASE_URL: testDatabaseUrlAsRole(database.url, role), KAFKA_BROKERS: run.kafkaBrokers, KAFKA_TOPIC_PREFIX: `${run.kafkaTopicPrefix}norole.` },
          outputKept_chars: 20_000
        })
        yield* Effect.addFinalizer(() => child.stop)
        assert.isTrue(yield* child.exitedWithin(30_000), child.output().slice(-2_000))
        assert.strictEqual(child.exit()?.code, 1, child.output().slice(-2_000))
        const line = failureLine(child.output())
        assert.include(line?.error, "CONSUMERS_DATABASE_URL")
        assert.include(line?.error, reason)
      }
    })), { timeout: 90_000 })

  it.live("a consumers' database that does not answer at start is an outage, not a setting: the process starts and its warnings name the driver's reason", () =>
    Effect.scoped(Effect.gen(function* () {
      const port = yield* freePort
      const child = launchChild({
        script: "packages/consumers/src/main.ts",
        label: "consumers",
        env: { CONSUMERS_DATABASE_URL: `postgres://pay_consumer@127.0.0.1:${port}/nothing`, KAFKA_BROKERS: run.kafkaBrokers, KAFKA_TOPIC_PREFIX: `${run.kafkaTopicPrefix}nodb.` },
        outputKept_chars: 20_000
      })
      yield* Effect.addFinalizer(() => child.stop)
      yield* child.awaitOutput(["settlement consumer cannot read the live generation", "ECONNREFUSED"], 30_000)
      assert.isFalse(yield* child.exitedWithin(500), "still retrying")
    })), { timeout: 60_000 })
})

describe("the consumers' process: its pool on /metrics", () => {
  it.live("db_client_connections_max is the consumers' pool size (CONSUMERS_DATABASE_POOL_SIZE), not the API's DATABASE_POOL_SIZE: DatabasePoolSaturated compares the two", () =>
    Effect.scoped(Effect.gen(function* () {
      const database = yield* acquireTestDatabase
      const metricsPort = yield* freePort
      const child = launchChild({
        script: "packages/consumers/src/main.ts",
        label: "consumers",
        env: {
          DATABASE_URL: database.url, CONSUMERS_DATABASE_POOL_SIZE: "3", DATABASE_POOL_SIZE: "20", METRICS_PORT: String(metricsPort),
          KAFKA_BROKERS: run.kafkaBrokers, KAFKA_TOPIC_PREFIX: `${run.kafkaTopicPrefix}poolmax.`
        },
        outputKept_chars: 20_000
      })
      yield* Effect.addFinalizer(() => child.stop)
      yield* child.awaitOutput(["consumer subscribed", "settlement.g1"], 30_000)
      const text = yield* Effect.promise(() => fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((response) => response.text()))
      assert.match(text, /^db_client_connections_max\{pool="consumers"\} 3$/m, text.split("\n").filter((line) => line.startsWith("db_client")).join("\n"))
    })), { timeout: 60_000 })
})
