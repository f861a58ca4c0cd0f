// A server that cannot start for a database reason says the reason (and the setting) in its one failure line
// (packages/infra/src/observability/ProcessMain.ts). It used to say only the client's words,
// `PgConnection: Query failed`, and the operator had to dig the driver's message ("permission
// denied for schema public": migrations given the application's URL) out of a stack trace.
import { assert, it } from "@effect/vitest"
import { acquireEmptyTestDatabase, acquireTestDatabase, shortId, testDatabaseUrlAsRole, testRun } from "@pay/testkit"
import { freePort, launchChild } from "@pay/testkit/ChildProcess"
import { Effect, Schema } from "effect"

const FailureLine = Schema.fromJsonString(Schema.Struct({ level: Schema.String, message: Schema.String, error: Schema.String }))

/** The "server failed" lines of a process's output (JSON log lines). */
const failureLines = (output: string) =>
  output.split("\n").flatMap((line) => {
    const decoded = Schema.decodeUnknownOption(FailureLine)(line)
    return decoded._tag === "Some" && decoded.value.message === "server failed" ? [decoded.value] : []
  })

/** The real server with `env` over the run's brokers and a prefix of its own; expected to stop at start: its one "server failed" line. */
const failedStart = (env: Readonly<Record<string, string>>) =>
  Effect.gen(function* () {
    const run = testRun()
    const prefix = shortId()
    const child = launchChild({
      script: "packages/server/src/main.ts",
      label: "server",
      env: {
        ...env, PORT: String(yield* freePort), METRICS_PORT: String(yield* freePort),
        KAFKA_BROKERS: run.kafkaBrokers, KAFKA_TOPIC_PREFIX: `${run.kafkaTopicPrefix}${prefix}.`, REDIS_URL: run.redisUrl, REDIS_KEY_PREFIX: `${run.redisKeyPrefix}${prefix}:`
      },
      outputKept_chars: 20_000
    })
    yield* Effect.addFinalizer(() => child.stop)
    assert.isTrue(yield* child.exitedWithin(30_000), child.output().slice(-2_000))
    assert.strictEqual(child.exit()?.code, 1, child.output().slice(-2_000))
    const failures = failureLines(child.output())
    assert.strictEqual(failures.length, 1, child.output().slice(-2_000))
    return failures[0]?.error ?? ""
  })

it.live("migrations given the application's role on an empty database: exit 1, one 'server failed' line naming the refusal", () =>
  Effect.scoped(Effect.gen(function* () {
    const app = testDatabaseUrlAsRole((yield* acquireEmptyTestDatabase).url, "pay_app")
    assert.include(yield* failedStart({ DATABASE_URL: app, MIGRATION_DATABASE_URL: app }), "permission denied for schema public")
  })), { timeout: 60_000 })

it.live("consumers inside the server with CONSUMERS_DATABASE_URL naming the API's role: exit 1, one 'server failed' line naming the setting (it used to start 'ready' while the consumers and the sender failed for ever)", () =>
  Effect.scoped(Effect.gen(function* () {
    const database = yield* acquireTestDatabase
    const app = testDatabaseUrlAsRole(database.url, "pay_app")
    const error = yield* failedStart({ DATABASE_URL: app, MIGRATION_DATABASE_URL: database.url, CONSUMERS_DATABASE_URL: app, CONSUMERS_ENABLED: "true" })
    assert.include(error, "CONSUMERS_DATABASE_URL: the role pay_app may not write processed_events")
  })), { timeout: 60_000 })

it.live("the publisher inside the server with PUBLISHER_DATABASE_URL naming the API's role: exit 1, one 'server failed' line naming the setting", () =>
  Effect.scoped(Effect.gen(function* () {
    const database = yield* acquireTestDatabase
    const app = testDatabaseUrlAsRole(database.url, "pay_app")
    const error = yield* failedStart({ DATABASE_URL: app, MIGRATION_DATABASE_URL: database.url, PUBLISHER_DATABASE_URL: app })
    assert.include(error, "PUBLISHER_DATABASE_URL: the role pay_app may not update outbox_events")
  })), { timeout: 60_000 })
