import { Config, Option, Redacted, Schema } from "effect"
import { boundedInt, boundedString, boundedStringSchema, offOrBoundedInt } from "./BoundedConfig.ts"
import { decodedOrAsIs } from "./DatabaseTarget.ts"
import { answerTimeoutBounds } from "./PostgresAnswerWatch.ts"
import { defaultIdleInTransactionTimeout_ms, idleInTransactionTimeoutBounds } from "./PostgresSessionBounds.ts"

/**
 * Where the platform's dependencies are. Every value comes from the environment, with defaults
 * that point at the local stack started by `scripts/stack.sh up` (loopback addresses only), and
 * bounds (BoundedConfig.ts) checked at start-up.
 *
 * | variable             | default                                       | bounds                        |
 * | -------------------- | --------------------------------------------- | ----------------------------- |
 * | `DATABASE_URL`       | `postgres://pay_app@127.0.0.1:5432/payments`  | 1..2048 characters            |
 * | `MIGRATION_DATABASE_URL` | `DATABASE_URL` when set, else `postgres://postgres@127.0.0.1:5432/payments` | 1..2048 characters |
 * | `REDIS_URL`          | `redis://127.0.0.1:6379/0`                     | 1..2048 characters            |
 * | `KAFKA_BROKERS`      | `127.0.0.1:9092`                               | 1..2048 characters            |
 * | `PORT`               | 3000                                          | a TCP port                    |
 * | `REDIS_KEY_PREFIX`   | `pay:`                                        | 0..100 characters             |
 * | `KAFKA_TOPIC_PREFIX` | (empty)                                       | 0..100 of `[A-Za-z0-9._-]`    |
 * | `DATABASE_POOL_SIZE` | 20                                            | 1..200                        |
 * | `CONSUMERS_DATABASE_URL` | `DATABASE_URL` with the user `pay_app` replaced by `pay_consumer` (no password); any other user: `DATABASE_URL` | 1..2048 characters |
 * | `CONSUMERS_DATABASE_POOL_SIZE` | 10                                  | 1..200                        |
 * | `PUBLISHER_DATABASE_URL` | `DATABASE_URL` with the user `pay_app` replaced by `pay_publisher` (no password); any other user: `DATABASE_URL` | 1..2048 characters |
 * | `PUBLISHER_DATABASE_POOL_SIZE` | 10                                  | 1..200                        |
 * | `KEYS_DATABASE_URL`  | `DATABASE_URL` with the user `pay_app` replaced by `pay_keys` (no password); any other user: `DATABASE_URL` | 1..2048 characters |
 * | `DATABASE_ANSWER_TIMEOUT_MS` | 10000 in services, 0 (off) in the CLI | 0..600000                     |
 * | `DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS` | 30000                  | 0 (off) or 1000..3600000      |
 * | `MIGRATION_LOCK_TIMEOUT_MS` | 10000                                  | 100..600000                   |
 */
export const configBounds = {
  url: { length_max: 2_048, pattern: /^\S+$/, expected: "a non-empty URL without spaces" },
  redisKeyPrefix: { length_max: 100 },
  kafkaTopicPrefix: { length_max: 100, pattern: /^[A-Za-z0-9._-]*$/, expected: "letters, digits, '.', '_' or '-' (a Kafka topic name prefix)" },
  databasePoolSize: { min: 1, max: 200 }
} as const

const databaseUrlConfig = (name: string) =>
  Config.schema(Schema.Redacted(boundedStringSchema(name, configBounds.url)), name)

/**
 * The application's connection: the role `pay_app`, which owns nothing and holds only the grants of
 * migrations/0012_app_role.sql (docs/security.md).
 */
export const DatabaseUrl = databaseUrlConfig("DATABASE_URL").pipe(
  Config.withDefault(Redacted.make("postgres://pay_app@127.0.0.1:5432/payments"))
)

/** The roles of scripts/roles.sql that the services log in as. */
export const applicationRole = "pay_app"
export const consumersRole = "pay_consumer"
export const publisherRole = "pay_publisher"
export const keysRole = "pay_keys"

/**
 * `pay_app`'s URL with another of the services' roles instead (`role`), and no password; any other URL unchanged. The
 * user is read where libpq-style URLs put it: before the `@` (percent-encoded or not, also in a
 * URL that Node's parser refuses, like a Unix-socket host `postgres://pay_app@/payments?host=/run`),
 * or in a `user` parameter; a `password` parameter is dropped with it.
 */
export const roleUrlOf = (application: Redacted.Redacted<string>, role: string): Redacted.Redacted<string> => {
  const text = Redacted.value(application)
  const userInfo = /^(postgres(?:ql)?:\/\/)([^@/?#]*)@/.exec(text)
  const name = userInfo?.[2]?.split(":")[0]
  const query = text.indexOf("?")
  const params = new URLSearchParams(query === -1 ? "" : text.slice(query + 1))
  const userInQuery = params.get("user")
  const isApplication = (raw: string | undefined | null) => raw !== undefined && raw !== null && decodedOrAsIs(raw) === applicationRole
  if (!isApplication(name) && !isApplication(userInQuery)) return application
  // The user before the `@`: `role` if it was pay_app's, and no password either way.
  const withUser = userInfo === null ? text : text.replace(userInfo[0], `${userInfo[1] ?? ""}${isApplication(name) ? role : name ?? ""}@`)
  if (!isApplication(userInQuery) && !params.has("password")) return Redacted.make(withUser)
  if (isApplication(userInQuery)) params.set("user", role)
  params.delete("password")
  const rest = params.toString()
  return Redacted.make(`${withUser.slice(0, withUser.indexOf("?"))}${rest === "" ? "" : `?${rest}`}`)
}

/**
 * A service role's connection `setting`: its own value when set (an invalid one is an error, never a
 * silent fallback), else `DATABASE_URL` with its user `pay_app` replaced by `role` (roleUrlOf).
 */
const roleDatabaseUrl = (setting: string, role: string) =>
  Config.all({ own: Config.option(databaseUrlConfig(setting)), application: DatabaseUrl }).pipe(
    Config.map(({ own, application }) => Option.getOrElse(own, () => roleUrlOf(application, role)))
  )

/**
 * The consumers' connection (the settlement and webhooks consumers, the webhook sender, and the
 * CLI's consumer commands): the role `pay_consumer`, which alone writes the consumers' tables
 * (migrations/0096_consumers_role.sql, docs/security.md). Unset: `DATABASE_URL` with its user
 * `pay_app` replaced by `pay_consumer` and no password (a deployment with passwords sets this
 * variable); a `DATABASE_URL` of any other user (a test's owner, one role for everything) is used
 * as it is. A value that is set but invalid is an error, never a silent fallback.
 */
export const ConsumersDatabaseUrl = roleDatabaseUrl("CONSUMERS_DATABASE_URL", consumersRole)

/**
 * The outbox publisher's connection (inside a server or its own process): the role
 * `pay_publisher`, which alone marks events published, re-queues them and deletes what retention
 * allows (migrations/0108_publisher_role.sql, docs/security.md). Unset: `DATABASE_URL` with its user
 * `pay_app` replaced by `pay_publisher` and no password; any other user's `DATABASE_URL` as it is.
 * A value that is set but invalid is an error, never a silent fallback.
 */
export const PublisherDatabaseUrl = roleDatabaseUrl("PUBLISHER_DATABASE_URL", publisherRole)

/**
 * The connection of the CLI's key commands (`merchants create`, `keys create`, `keys revoke`): the
 * role `pay_keys`, which alone inserts and revokes API keys (migrations/0109_keys_role.sql,
 * docs/security.md). Unset: `DATABASE_URL` with its user `pay_app` replaced by `pay_keys` and no
 * password; any other user's `DATABASE_URL` as it is. A value that is set but invalid is an error.
 */
export const KeysDatabaseUrl = roleDatabaseUrl("KEYS_DATABASE_URL", keysRole)

/**
 * The schema owner's connection, used only to apply migrations (then closed). Defaults to
 * `DATABASE_URL` when that is set (one URL for both, as before the roles were split), else to the
 * local stack's owner. A value that is set but invalid is an error, never a silent fallback.
 */
export const MigrationDatabaseUrl = Config.all({
  migration: Config.option(databaseUrlConfig("MIGRATION_DATABASE_URL")),
  application: Config.option(databaseUrlConfig("DATABASE_URL"))
}).pipe(
  Config.map(({ migration, application }) =>
    Option.getOrElse(Option.orElse(migration, () => application), () =>
      Redacted.make("postgres://postgres@127.0.0.1:5432/payments"))
  )
)
export const RedisUrl = boundedString("REDIS_URL", configBounds.url, "redis://127.0.0.1:6379/0")
export const KafkaBrokers = boundedString("KAFKA_BROKERS", configBounds.url, "127.0.0.1:9092")
export const HttpPort = Config.Port("PORT").pipe(Config.withDefault(3000))

/** Prefixes that isolate one deployment (or one test run) from another on shared Redis and Kafka. */
export const RedisKeyPrefix = boundedString("REDIS_KEY_PREFIX", configBounds.redisKeyPrefix, "pay:")
export const KafkaTopicPrefix = boundedString("KAFKA_TOPIC_PREFIX", configBounds.kafkaTopicPrefix, "")

/**
 * How long the migrator waits for any one lock before it gives up (`lock_timeout` of its
 * connection): a migration behind a long transaction fails, naming the wait, instead of waiting
 * without end while every statement on that table queues behind its lock request (docs/runbook.md, "Migrations").
 */
export const MigrationLockTimeout = boundedInt("MIGRATION_LOCK_TIMEOUT_MS", { min: 100, max: 600_000 }, 10_000)

/** Pool size of the Postgres client; each request holds at most one connection. */
export const DatabasePoolSize = boundedInt("DATABASE_POOL_SIZE", configBounds.databasePoolSize, 20)

/**
 * Pool size of the consumers' client (CONSUMERS_DATABASE_URL): a lane per partition and consumer
 * holds one connection for its slice, the webhook sender one per claim or completion.
 */
export const ConsumersDatabasePoolSize = boundedInt("CONSUMERS_DATABASE_POOL_SIZE", configBounds.databasePoolSize, 10)

/**
 * Pool size of the publisher's client (PUBLISHER_DATABASE_URL): each of `OUTBOX_WORKERS` (at most 8)
 * holds one connection from its claim to its mark; retention and the backlog gauges take one now and then.
 */
export const PublisherDatabasePoolSize = boundedInt("PUBLISHER_DATABASE_POOL_SIZE", configBounds.databasePoolSize, 10)

/**
 * How long a connection may wait for Postgres to answer a statement before it is destroyed
 * (PostgresAnswerWatch.ts); 0: no bound. `fallback_ms` is the process's default.
 */
export const DatabaseAnswerTimeout = (fallback_ms: number) =>
  boundedInt("DATABASE_ANSWER_TIMEOUT_MS", answerTimeoutBounds, fallback_ms)

/**
 * How long a backend may sit inside a transaction waiting for this process before Postgres ends
 * the session and releases its locks (PostgresSessionBounds.ts: a partition's open transactions);
 * 0: the server's setting.
 */
export const DatabaseIdleInTransactionTimeout = offOrBoundedInt(
  "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS",
  idleInTransactionTimeoutBounds,
  defaultIdleInTransactionTimeout_ms
)
