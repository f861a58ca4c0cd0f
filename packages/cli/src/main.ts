/**
 * Operator commands.
 *
 *   pnpm cli merchants create "Acme"     creates a merchant and its first API key; prints both
 *                                        (the key is shown once: only its SHA-256 hash is stored)
 *   pnpm cli keys create <merchant id>   issues another API key for a merchant
 *   pnpm cli keys revoke <api key id>    revokes a key (401 from then on); exit 0 when revoked (or
 *                                        already), 1 when no key has that id
 *   pnpm cli fees set <merchant id> <currency> <bps> <fixed minor units>
 *   pnpm cli refunds fee-returned <merchant id> true|false
 *                                        sets the merchant's settlement fee for one currency
 *   pnpm cli idempotency parked [limit]  lists the keys the completer parked (one JSON line each)
 *   pnpm cli idempotency retry <key id>  gives a parked key back to the completer (fresh attempts);
 *                                        exit 1 when no parked key has that id
 *   pnpm cli webhooks failed [limit]     the most recently given-up webhook deliveries (exhausted
 *                                        retries or 410), newest first, as JSON lines (default 50)
 *
 * and the consumers' commands (reconcile, replay, consumers lag|offsets|reset, dlq list|redrive|dismiss:
 * see ConsumerCommands.ts). Uses DATABASE_URL (the app role; KAFKA_BROKERS, KAFKA_TOPIC_PREFIX) like
 * the server; the key commands (merchants create, keys create|revoke) KEYS_DATABASE_URL (the role
 * pay_keys, the only one that writes API keys: migrations/0109). A command stops (exit 1, nothing
 * done) when the database lacks a migration this build carries; `pnpm cli migrate` applies them as
 * MIGRATION_DATABASE_URL (the schema owner), and prints {"newest_applied", "newest_carried"}.
 *
 * stdout carries the command's result (JSON) and nothing else, so it can be piped to `jq`; log
 * lines (a replay's progress, parked records: JSON, from LOG_LEVEL up), refusals and failures go to
 * stderr. A reader that closes the pipe early (EPIPE) does not stop the command half-way: it
 * finishes, says on the other stream that its output was lost, and exits 1.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Currency, MerchantId, MerchantName, uuidPattern } from "@pay/domain"
import {
  ConsumersDatabaseUrl,
  DatabaseUrl,
  databaseTarget,
  KeysDatabaseUrl,
  keysLockTimeout_ms,
  KeysToolDatabaseLive,
  loggingWith,
  MigratingToolDatabaseLive,
  migrationProgress,
  migrationsInBrief,
  preloadKafkaLibrary,
  sqlStateOf,
  structuredWithTrace,
  ToolDatabaseLive
} from "@pay/infra"
import { type ParkedKey, ParkedKeys, PARKED_LIST_LIMIT_MAX } from "@pay/idempotency"
import { ApiKeys, createMerchantWithKey, MerchantRepository } from "@pay/merchants"
import { FeeSchedules, RefundFeeSettings } from "@pay/settlement"
import { WebhookDeliveries } from "@pay/webhooks"
import { Cause, Console, Effect, Layer, Logger, Redacted, Schema } from "effect"
import { isSqlError, type SqlError } from "effect/sql/SqlError"
import { countArgument, wholeNumberArgument } from "./Arguments.ts"
import { consumerCommand, consumerUsage } from "./ConsumerCommands.ts"

const usage = `usage:
  pnpm cli merchants create "<name>"
  pnpm cli keys create <merchant id>
  pnpm cli keys revoke <api key id>
  pnpm cli fees set <merchant id> <currency> <bps 0-10000> <fixed fee in minor units>
  pnpm cli refunds fee-returned <merchant id> true|false   (the fee is kept on refunds unless true)
  pnpm cli idempotency parked [limit 1-1000, default 100]
  pnpm cli idempotency retry <idempotency key id>
  pnpm cli webhooks failed [limit 1-1000]
  pnpm cli migrate                        (applies pending migrations as MIGRATION_DATABASE_URL; no other command does)
${consumerUsage}`

const FeeBps = countArgument("the fee in basis points", { minimum: 0, maximum: 10_000 })
const FeeFixedMinor = wholeNumberArgument("the fixed fee in minor units", { minimum: 0n, maximum: 99_999_999_999n })

const FailedLimit = countArgument("limit", { minimum: 1, maximum: 1_000 })

class UsageError extends Schema.TaggedError<UsageError>()("UsageError", { message: Schema.String }) {}

const printKey = (merchantId: string, key: { readonly id: string; readonly secret: Redacted.Redacted<string> }) =>
  Console.log(JSON.stringify({ merchant_id: merchantId, api_key_id: key.id, api_key: Redacted.value(key.secret) }, null, 2))

const ParkedLimit = countArgument("limit", { minimum: 1, maximum: PARKED_LIST_LIMIT_MAX })

/** An API key's id is a uuid: anything else is a malformed command line (exit 2), as for every id. */
const ApiKeyIdArgument = Schema.String.check(Schema.isPattern(uuidPattern, { message: "an API key id is a uuid (keys create prints it as api_key_id)" }))

/** An idempotency key's id is a uuid: anything else is a malformed command line (exit 2), not an unknown key. */
const KeyIdArgument = Schema.String.check(Schema.isPattern(uuidPattern, { message: "an idempotency key id is a uuid (pnpm cli idempotency parked lists them)" }))

const parkedJson = (key: ParkedKey) =>
  JSON.stringify({ ...key, parked_at: key.parked_at.toISOString(), created_at: key.created_at.toISOString() })

/** `idempotency parked|retry`: what the completer gave up on (docs/runbook.md). */
const idempotencyCommand = (command: string | undefined, argument: string | undefined) =>
  Effect.gen(function* () {
    const parked = yield* ParkedKeys
    if (command === "parked") {
      const limit = argument === undefined ? 100 : yield* Schema.decodeUnknownEffect(ParkedLimit)(argument)
      const keys = yield* parked.list(limit)
      for (const key of keys) yield* Console.log(parkedJson(key))
      return yield* Console.error(`${keys.length} parked key(s)${keys.length === limit ? ` (first ${limit})` : ""}`)
    }
    if (command === "retry" && argument !== undefined) {
      yield* parked.retry(yield* Schema.decodeUnknownEffect(KeyIdArgument)(argument))
      return yield* Console.log(JSON.stringify({ key_id: argument, result: "queued for the completer" }))
    }
    return yield* new UsageError({ message: usage })
  })

const args = process.argv.slice(2)
const consumers = consumerCommand(args)
/**
 * `pnpm cli migrate` alone applies pending migrations (as MIGRATION_DATABASE_URL, the schema
 * owner). Every other command checks that the schema is current and stops when it is not: an
 * operator's read (reconcile, dlq list, …) during an incident never changes production's schema,
 * whatever URLs its environment holds.
 */
const migrating = args.length === 1 && args[0] === "migrate"
/** The commands that write API keys (and `merchants create`, a merchant with its first key): as `pay_keys`. */
const writesKeys = args[0] === "keys" || (args[0] === "merchants" && args[1] === "create")
const CliDatabaseLive: Layer.Layer<
  Layer.Success<typeof ToolDatabaseLive>,
  Layer.Error<typeof ToolDatabaseLive> | Layer.Error<typeof MigratingToolDatabaseLive>
> = migrating ? MigratingToolDatabaseLive : writesKeys ? KeysToolDatabaseLive : ToolDatabaseLive

const program = Effect.gen(function* () {
  const [group, command, argument, ...rest] = args
  if (consumers !== undefined) return yield* consumers.effect
  if (migrating) return yield* Console.log(JSON.stringify(yield* migrationProgress))
  const merchants = yield* MerchantRepository
  const apiKeys = yield* ApiKeys
  const fees = yield* FeeSchedules
  const deliveries = yield* WebhookDeliveries
  if (group === "merchants" && command === "create" && argument !== undefined && rest.length === 0) {
    const name = yield* Schema.decodeUnknownEffect(MerchantName)(argument)
    const { merchant, key } = yield* createMerchantWithKey(name)
    yield* Console.error(`merchant ${merchant.id} created; the API key below is shown once`)
    return yield* printKey(merchant.id, key)
  }
  if (group === "keys" && command === "create" && argument !== undefined && rest.length === 0) {
    const merchantId = yield* Schema.decodeUnknownEffect(MerchantId)(argument)
    // An unknown merchant is "no merchant …: nothing changed" (exit 1), as for fees, not the
    // foreign key's SqlError with its stack (outside operator review).
    yield* merchants.findById(merchantId)
    const key = yield* apiKeys.create(merchantId)
    return yield* printKey(merchantId, key)
  }
  if (group === "keys" && command === "revoke" && argument !== undefined && rest.length === 0) {
    const revoked = yield* apiKeys.revoke(yield* Schema.decodeUnknownEffect(ApiKeyIdArgument)(argument))
    const what = revoked._tag === "Revoked" ? "revoked" : "already revoked"
    return yield* Console.log(JSON.stringify({ api_key_id: argument, merchant_id: revoked.merchantId, result: what, revoked_at: revoked.revokedAt.toISOString() }))
  }
  if (group === "fees" && command === "set" && argument !== undefined && rest.length === 3) {
    const merchantId = yield* Schema.decodeUnknownEffect(MerchantId)(argument)
    const [currencyText, bpsText, fixedText] = rest
    const currency = yield* Schema.decodeUnknownEffect(Currency)(currencyText)
    const fee_bps = yield* Schema.decodeUnknownEffect(FeeBps)(bpsText)
    const fee_fixed_minor = yield* Schema.decodeUnknownEffect(FeeFixedMinor)(fixedText)
    yield* merchants.findById(merchantId)
    yield* fees.set(merchantId, currency, { fee_bps, fee_fixed_minor })
    return yield* Console.log(JSON.stringify({ merchant_id: merchantId, currency, fee_bps, fee_fixed_minor: String(fee_fixed_minor) }))
  }
  if (group === "refunds" && command === "fee-returned" && argument !== undefined && rest.length === 1) {
    const merchantId = yield* Schema.decodeUnknownEffect(MerchantId)(argument)
    const fee_returned = yield* Schema.decodeUnknownEffect(Schema.Literals(["true", "false"]))(rest[0])
    yield* merchants.findById(merchantId)
    yield* (yield* RefundFeeSettings).set(merchantId, fee_returned === "true")
    return yield* Console.log(JSON.stringify({ merchant_id: merchantId, fee_returned: fee_returned === "true" }))
  }
  if (group === "idempotency" && rest.length === 0) return yield* idempotencyCommand(command, argument)
  if (group === "webhooks" && command === "failed" && rest.length === 0) {
    const limit = yield* Schema.decodeUnknownEffect(FailedLimit)(argument ?? "50")
    const failed = yield* deliveries.failed(limit)
    for (const delivery of failed) yield* Console.log(JSON.stringify(delivery))
    return yield* Console.error(`${failed.length} failed deliveries; redeliver with POST /v1/webhook_endpoints/{id}/deliveries/{delivery_id}/redeliver or …/recover`)
  }
  return yield* new UsageError({ message: usage })
})

/** A refusal or failure: its words on stderr, and the exit code (2: the command line; 1: the rest). */
const report = (message: string, exitCode: 1 | 2) => Console.error(message).pipe(Effect.andThen(Effect.sync(() => { process.exitCode = exitCode })))

/**
 * Log lines on stderr, as JSON like every process's (structuredWithTrace), from LOG_LEVEL up:
 * Effect's default logger writes to stdout, where they broke `pnpm cli replay settlement | jq`.
 */
const StderrLoggingLive = loggingWith(Logger.withConsoleError(structuredWithTrace))

/**
 * A closed stdout or stderr (`pnpm cli replay settlement | head -1`: the reader left) makes Node
 * emit an 'error' event on the stream, which, with no listener, killed the process wherever it was
 * (a replay half-built). The command goes on instead; what could not be written is said on the
 * other stream when it is still open, and the exit code is 1 (the result or its logs were lost).
 */
const keepRunningWhenOutputCloses = Effect.sync(() => {
  const streams = [{ name: "stdout", stream: process.stdout, other: process.stderr }, { name: "stderr", stream: process.stderr, other: process.stdout }]
  for (const { name, stream, other } of streams) {
    let reported = false
    stream.on("error", (error: NodeJS.ErrnoException) => {
      process.exitCode = 1
      if (reported) return
      reported = true
      if (other.writable && !other.destroyed) {
        other.write(`${name} is closed (${error.code ?? error.message}): output was lost; the command went on to its end (exit 1)\n`)
      }
    })
  }
})

/**
 * Which database the command works on, said on stderr before it connects: without DATABASE_URL
 * the CLI uses the local default, and "0 parked key(s)" or "[]" from another deployment's database
 * read as healthy (outside operator review). The URL without its password.
 */
const configuredTarget = Effect.gen(function* () {
  return databaseTarget(Redacted.value(yield* (writesKeys ? KeysDatabaseUrl : DatabaseUrl)))
})

/**
 * Where this command's database comes from, in words. A key command connects only as
 * KEYS_DATABASE_URL (migrations/0109), derived from DATABASE_URL when unset: a failure named
 * DATABASE_URL for it sent operators to the wrong setting (outside review of 0109).
 */
const targetSource = (): string => {
  const applicationSet = process.env["DATABASE_URL"] !== undefined
  if (!writesKeys) return applicationSet ? "DATABASE_URL" : "DATABASE_URL is not set: the local default"
  if (process.env["KEYS_DATABASE_URL"] !== undefined) return "KEYS_DATABASE_URL"
  return `KEYS_DATABASE_URL is not set: derived from ${applicationSet ? "DATABASE_URL" : "the local default"}`
}

const sayTarget = Effect.gen(function* () {
  yield* Console.error(`database: ${yield* configuredTarget} (${targetSource()})`)
  // The consumer commands write the consumers' tables as their role (migrations/0096): said too.
  if (consumers !== undefined) {
    const from = process.env["CONSUMERS_DATABASE_URL"] === undefined ? " (from DATABASE_URL: CONSUMERS_DATABASE_URL is not set)" : " (CONSUMERS_DATABASE_URL)"
    yield* Console.error(`consumers' database: ${databaseTarget(Redacted.value(yield* ConsumersDatabaseUrl))}${from}`)
  }
})

/**
 * A database failure in one line: what failed, the driver's reason, and where (never the password).
 * A role without the privilege is most often the application's role running the migrations that
 * a command applies first when one is pending (MIGRATION_DATABASE_URL defaults to DATABASE_URL): said so.
 */
const sqlFailure = (error: SqlError) =>
  Effect.gen(function* () {
    const cause = error.reason.cause instanceof Error ? error.reason.cause.message : undefined
    // A consumer command works on two connections (migrations/0096): the failure may be either's.
    const consumersTarget = consumers === undefined
      ? undefined
      : yield* Effect.orElseSucceed(Effect.map(ConsumersDatabaseUrl, (url) => databaseTarget(Redacted.value(url))), () => databaseTarget(""))
    if (error.reason._tag === "AuthorizationError") {
      const consumersHint = consumersTarget === undefined
        ? ""
        : `; a consumer command writes the consumers' tables as CONSUMERS_DATABASE_URL (${consumersTarget}), which must be the role pay_consumer`
      const works = writesKeys
        ? "a key command works as KEYS_DATABASE_URL, which must be the role pay_keys (unset: DATABASE_URL with the user pay_app replaced)"
        : `a command works as DATABASE_URL, the application's role pay_app${consumersHint}`
      return yield* report(`the database refused this role: ${cause ?? error.message}\n(${works}; docs/runbook.md)`, 1)
    }
    if (sqlStateOf(error) === "55P03") {
      // lock_timeout (keysLockTimeout_ms): a key command behind another session's lock on the row.
      return yield* report(`a row this command changes is locked by another session (waited ${keysLockTimeout_ms / 1_000} s): nothing changed; try again, or find the holder in pg_locks / pg_stat_activity`, 1)
    }
    const target = yield* Effect.orElseSucceed(configuredTarget, () => databaseTarget(""))
    const where = consumersTarget === undefined
      ? `database ${target}`
      : `database ${target} (DATABASE_URL) or the consumers' ${consumersTarget} (CONSUMERS_DATABASE_URL)`
    const from = consumersTarget === undefined
      ? `the database comes from ${writesKeys ? "KEYS_DATABASE_URL (unset: derived from DATABASE_URL)" : "DATABASE_URL"}`
      : "the databases come from DATABASE_URL and CONSUMERS_DATABASE_URL"
    return yield* report(`${where}: ${error.message}${cause === undefined ? "" : ` (${cause})`}\n(${from}: run the CLI with the deployment's environment)`, 1)
  })

/**
 * `--help` or `-h` anywhere, or `help` alone: the usage on stdout, exit 0, without connecting to
 * anything (`merchants create --help` created a merchant named "--help" and printed its key:
 * outside re-test).
 */
const helpAsked = (args: ReadonlyArray<string>) =>
  args.some((arg) => arg === "--help" || arg === "-h") || (args.length === 1 && args[0] === "help")

/**
 * A command that talks to Kafka imports the client library BEFORE the database layer connects:
 * the import blocks the event loop (~0.5 s here, several seconds on a loaded machine), and a
 * Postgres connection begun before it found its 5 s connect timer fired first ("Connection timed
 * out" from a healthy database). The others never import it.
 */
const kafkaFirst = consumers?.kafka === true ? preloadKafkaLibrary : Effect.void

const run = helpAsked(args) ? Console.log(usage) : Effect.andThen(keepRunningWhenOutputCloses, Effect.andThen(sayTarget, kafkaFirst)).pipe(
  Effect.andThen(program.pipe(Effect.provide(
    Layer.mergeAll(MerchantRepository.layer, ApiKeys.layer, FeeSchedules.layer, RefundFeeSettings.layer, ParkedKeys.layer, WebhookDeliveries.layer).pipe(
      Layer.provideMerge(CliDatabaseLive)
    )
  ))),
  Effect.catchTag("UsageError", (error) => report(error.message, 2)),
  Effect.catchTag("SchemaError", (error) => report(`invalid argument: ${error.message}\n(pnpm cli alone prints the usage)`, 2)),
  Effect.catchTag("ParkedKeyNotFound", (error) => report(`${error.message}: nothing queued`, 1)),
  Effect.catchTag("ApiKeyNotFound", (error) => report(`${error.message}: nothing revoked`, 1)),
  Effect.catchTag("DeadLetterNotFound", (error) => report(`no parked event ${error.id}: nothing re-driven (pnpm cli dlq list shows the parked ones)`, 1)),
  Effect.catchTag("NoOpenDeadLetter", (error) => report(`no open parked event ${error.id} (none, re-driven or dismissed already): nothing dismissed (pnpm cli dlq list shows the open ones)`, 1)),
  Effect.catchTag("MerchantNotFound", (error) => report(`${error.message}: nothing changed`, 1)),
  Effect.catchTag("InvalidConsumerName", (error) => report(`invalid argument: ${JSON.stringify(error.consumer)} is not a consumer name\n(pnpm cli alone prints the usage)`, 2)),
  Effect.catchTag("UnknownConsumer", (error) =>
    report(`no consumer ${error.consumer} (known: ${error.known.join(", ")}; pnpm cli consumers offsets lists the stored ones)`, 1)),
  Effect.catchTag("OffsetBeyondEnd", (error) =>
    report(
      `offset ${error.offset} is above the log end offset of partition(s) ${error.endOffsets.flatMap((end, partition) => (error.offset > end ? [partition] : [])).join(", ")} (end offsets by partition: ${error.endOffsets.join(", ")}): the consumer would skip every record until the topic reached it; nothing moved (the offset must be at most ${error.endOffsets.reduce((low, end) => (end < low ? end : low), error.offset)}, the lowest)`,
      1
    )),
  Effect.catchTag("OffsetSkipsRecords", (error) =>
    report(
      `offset ${error.offset} is ahead of what ${error.consumer} has applied (stored offsets by partition: ${error.storedOffsets.join(", ")}): ${error.skipped} record(s) would never be applied; nothing moved (add --skip to skip them on purpose; a backward reset re-reads, effects stay once)`,
      1
    )),
  Effect.catchTag("ConsumerGroupActive", (error) =>
    report(`consumer group ${error.group} still has members: stop every process that runs ${error.consumer} (the consumers processes, or servers with CONSUMERS_ENABLED) first; nothing moved`, 1)),
  // One line, not a stack trace: the usual cause at the console is the wrong broker or prefix.
  Effect.catchTag("KafkaError", (error) =>
    report(`kafka (${error.operation}): ${error.message}\n(the broker and topic come from KAFKA_BROKERS and KAFKA_TOPIC_PREFIX: run the CLI with the deployment's environment)`, 1)),
  Effect.catchTag("NoHandler", (error) => report(error.message, 1))
).pipe(
  // Any other database failure (down, no such database, a refused statement): one line naming the
  // database, not a stack trace whose useful line is at its bottom (outside operator review).
  Effect.catchIf((error): error is SqlError => isSqlError(error), sqlFailure),
  // The pending migrations a command applies first, refused (a lock not granted in time, a file that
  // fails): one line with the driver's reason, not the migrator's stack (outside operator review).
  Effect.catchTag("MigrationsFailed", (error) =>
    // The hint about the owner's URL only where the database refused the migrator; a refusal of the
    // build's own files says what to do itself (outside re-test).
    report(error.refused_by === "database"
      ? `${error.message}\n(pnpm cli migrate applies pending migrations as MIGRATION_DATABASE_URL, which defaults to DATABASE_URL: set it to the schema owner's URL; docs/runbook.md, "Migrations")`
      : error.message, 1)),
  Effect.catchTag("SchemaBehind", (error) =>
    report(
      `the database's schema is behind this CLI (it lacks ${migrationsInBrief(error.missing)}; newest applied ${error.newest_applied}, this build carries ${error.newest_carried}): nothing done\n(deploy the server that carries them, which applies them at start, or run pnpm cli migrate with MIGRATION_DATABASE_URL the schema owner's URL; a CLI never migrates as a side effect; docs/runbook.md, "Migrations")`,
      1
    )),
  Effect.catchTag("RedriveFailed", (error) =>
    report(`re-drive of parked event ${error.id} failed: ${error.error.split("\n")[0] ?? ""}\n(the row keeps the error in redrive_error, pnpm cli dlq list; fix the cause and re-drive again)`, 1)),
  // Anything else (the database or Kafka down, a bug): the whole cause on stderr, exit 1. Only
  // results go to stdout, so `pnpm cli … | jq` never reads an error as data.
  Effect.catchCause((cause) => report(Cause.pretty(cause), 1)),
  Effect.provide(StderrLoggingLive),
  // LOG_LEVEL malformed: said on stderr like any other refusal of the environment.
  Effect.catchTag("ConfigError", (error) => report(`invalid environment: ${error.message}`, 1))
)

NodeRuntime.runMain(run)
