import { Config, Context, Effect, Fiber, Layer, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { randomUUID } from "node:crypto"

/**
 * The acquirer: the bank-side system that authorizes and captures card payments. This is a
 * simulator with the two properties of a real one that our failure handling depends on:
 *
 * 1. It is idempotent per `reference`: asked twice with the same reference, it performs the
 *    operation once and answers the same outcome twice. We derive references from our own ids
 *    (e.g. `payment:<id>:authorization`), so a retry after an unknown outcome can never charge twice.
 * 2. It has its own memory, outside our transactions: `acquirer_sim.operations` in Postgres,
 *    written on a connection that never joins the caller's transaction, so a rollback or a
 *    `kill -9` of our server does not undo what "happened at the bank". Tests read that table to
 *    prove "performed at most once" (`performed_count` = 1, one row per payment and operation).
 *
 * Test payment methods (Stripe's names):
 * - `pm_card_visa`, `pm_card_mastercard`: approved.
 * - `pm_card_declined`: declined, `card_declined`.
 * - `pm_card_insufficient_funds`: declined, `insufficient_funds`.
 * - `pm_card_timeout`: the FIRST call for a reference is performed (approved) but its answer never
 *   arrives; our side fails with `AcquirerTimeout` after `timeout_ms`. Later calls with the same
 *   reference answer the recorded outcome promptly. (Captures of such a payment behave the same.)
 * - anything else: declined, `card_declined` (an unknown card).
 */

export const DeclineCode = Schema.Literals(["card_declined", "insufficient_funds"])
export type DeclineCode = typeof DeclineCode.Type

export class Approved extends Schema.TaggedClass<Approved>()("Approved", {
  /** The acquirer's own id for the operation (what a support ticket to the bank quotes). */
  acquirerReference: Schema.String
}) {}

export class Declined extends Schema.TaggedClass<Declined>()("Declined", {
  code: DeclineCode,
  message: Schema.String
}) {}

/** A definitive answer. Both are final for the reference: asking again gives the same one. */
export type AcquirerOutcome = Approved | Declined

export const AcquirerOperation = Schema.Literals(["authorize", "capture"])
export type AcquirerOperation = typeof AcquirerOperation.Type

/**
 * No answer within `timeout_ms`: the operation may or may not have happened at the acquirer.
 * Never treat it as a decline. Ask again with the same reference (now or from the completer).
 */
export class AcquirerTimeout extends Schema.TaggedError<AcquirerTimeout>()(
  "AcquirerTimeout",
  { operation: AcquirerOperation, reference: Schema.String, timeout_ms: Schema.Int },
  { httpApiStatus: 504 }
) {
  static readonly code = "acquirer_timeout"
  get code(): typeof AcquirerTimeout.code {
    return AcquirerTimeout.code
  }
  override get message(): string {
    return `the acquirer did not answer ${this.operation} ${this.reference} within ${this.timeout_ms} ms; the outcome is unknown`
  }
}

/**
 * The acquirer could not be reached or failed. Handle it like a timeout (outcome unknown, ask
 * again with the same reference), never like a decline.
 */
export class AcquirerUnavailable extends Schema.TaggedError<AcquirerUnavailable>()(
  "AcquirerUnavailable",
  { operation: AcquirerOperation, reference: Schema.String, detail: Schema.String },
  { httpApiStatus: 503 }
) {
  static readonly code = "acquirer_unavailable"
  get code(): typeof AcquirerUnavailable.code {
    return AcquirerUnavailable.code
  }
  override get message(): string {
    return `the acquirer is unavailable for ${this.operation} ${this.reference}: ${this.detail}`
  }
}

export interface AuthorizeRequest {
  /** Our idempotency reference for this operation, e.g. `payment:<id>:authorization`. */
  readonly reference: string
  readonly paymentId: string
  readonly amount_minor: bigint
  readonly currency: string
  readonly paymentMethod: string
}

export interface CaptureRequest {
  /** e.g. `payment:<id>:capture` */
  readonly reference: string
  readonly paymentId: string
  readonly amount_minor: bigint
  readonly currency: string
}

/** `first_call`: the first call per reference is performed but its answer is lost; `every_call`: every answer is lost. */
export type AnswerLoss = "first_call" | "every_call"

export interface AcquirerFaults {
  readonly failAuthorizeAfterPerforming?: AnswerLoss
  readonly failCaptureAfterPerforming?: AnswerLoss
  /** Every call fails with AcquirerUnavailable before anything is performed. */
  readonly unavailable?: boolean
}

export interface AcquirerOptions {
  /** Our side gives up after this long (`ACQUIRER_TIMEOUT_MS`). */
  readonly timeout_ms: number
  /** Simulated network + processing time of every call (`ACQUIRER_LATENCY_MS`). */
  readonly latency_ms: number
  readonly faults: AcquirerFaults
}

export const defaultAcquirerOptions: AcquirerOptions = { timeout_ms: 2_000, latency_ms: 5, faults: {} }

/**
 * `ACQUIRER_FAULTS`: the simulator's faults for a whole process, comma-separated (default none).
 * Lets a test that runs the real server process (`kill -9` between capture and commit) make the
 * acquirer perform an operation and lose its answer. Never set in production.
 */
export const AcquirerFaultName = Schema.Literals([
  "authorize_answer_lost_first_call",
  "authorize_answer_lost_every_call",
  "capture_answer_lost_first_call",
  "capture_answer_lost_every_call",
  "unavailable"
])
export type AcquirerFaultName = typeof AcquirerFaultName.Type

export const acquirerFaultsFromNames = (names: ReadonlyArray<AcquirerFaultName>): AcquirerFaults => {
  const lost = (operation: "authorize" | "capture"): AnswerLoss | undefined =>
    names.includes(`${operation}_answer_lost_every_call`)
      ? "every_call"
      : names.includes(`${operation}_answer_lost_first_call`) ? "first_call" : undefined
  const failAuthorizeAfterPerforming = lost("authorize")
  const failCaptureAfterPerforming = lost("capture")
  return {
    ...(failAuthorizeAfterPerforming === undefined ? {} : { failAuthorizeAfterPerforming }),
    ...(failCaptureAfterPerforming === undefined ? {} : { failCaptureAfterPerforming }),
    ...(names.includes("unavailable") ? { unavailable: true } : {})
  }
}

export const AcquirerOptionsConfig = Config.all({
  timeout_ms: Config.Int("ACQUIRER_TIMEOUT_MS").pipe(Config.withDefault(defaultAcquirerOptions.timeout_ms)),
  latency_ms: Config.Int("ACQUIRER_LATENCY_MS").pipe(Config.withDefault(defaultAcquirerOptions.latency_ms)),
  faults: Config.Array(AcquirerFaultName, "ACQUIRER_FAULTS").pipe(
    Config.withDefault<ReadonlyArray<AcquirerFaultName>>([]),
    Config.map(acquirerFaultsFromNames)
  )
})

const OperationRow = Schema.Struct({
  reference: Schema.String,
  operation: AcquirerOperation,
  payment_id: Schema.String,
  amount_minor: Schema.BigInt,
  currency: Schema.String,
  outcome: Schema.Literals(["approved", "declined"]),
  decline_code: Schema.NullOr(DeclineCode),
  decline_message: Schema.NullOr(Schema.String),
  acquirer_reference: Schema.String,
  payment_method: Schema.NullOr(Schema.String),
  inserted: Schema.Boolean
})
type OperationRow = typeof OperationRow.Type
const decodeOperationRows = Schema.decodeUnknownEffect(Schema.Array(OperationRow))

interface Decision {
  readonly outcome: "approved" | "declined"
  readonly declineCode: DeclineCode | null
  readonly declineMessage: string | null
  /** Decides whether the answer to the first call for a reference is lost. */
  readonly paymentMethod: string | null
}

const decideAuthorization = (paymentMethod: string): Decision => {
  switch (paymentMethod) {
    case "pm_card_visa":
    case "pm_card_mastercard":
    case "pm_card_timeout":
      return { outcome: "approved", declineCode: null, declineMessage: null, paymentMethod }
    case "pm_card_declined":
      return { outcome: "declined", declineCode: "card_declined", declineMessage: "Your card was declined.", paymentMethod }
    case "pm_card_insufficient_funds":
      return { outcome: "declined", declineCode: "insufficient_funds", declineMessage: "Your card has insufficient funds.", paymentMethod }
    default:
      return { outcome: "declined", declineCode: "card_declined", declineMessage: "Unknown card.", paymentMethod }
  }
}

/** Creates the simulator's own schema once; the advisory lock serializes servers starting together. */
const ensureSchema = (sql: SqlClient.SqlClient) =>
  sql.withTransaction(
    Effect.gen(function* () {
      yield* sql`SELECT pg_advisory_xact_lock(hashtext('acquirer_sim.schema'))`
      yield* sql`CREATE SCHEMA IF NOT EXISTS acquirer_sim`
      yield* sql`
        CREATE TABLE IF NOT EXISTS acquirer_sim.operations (
          reference text PRIMARY KEY CHECK (length(reference) BETWEEN 1 AND 200),
          operation text NOT NULL CHECK (operation IN ('authorize', 'capture')),
          payment_id text NOT NULL CHECK (length(payment_id) BETWEEN 1 AND 200),
          amount_minor bigint NOT NULL CHECK (amount_minor > 0),
          currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
          payment_method text,
          outcome text NOT NULL CHECK (outcome IN ('approved', 'declined')),
          decline_code text CHECK (decline_code IN ('card_declined', 'insufficient_funds')),
          decline_message text,
          acquirer_reference text NOT NULL UNIQUE,
          -- How many times the acquirer performed the operation: 1, by construction (a repeated
          -- reference only increments request_count). A second row for the same payment and
          -- operation is what a retry with a NEW reference looks like: a double charge.
          performed_count int NOT NULL DEFAULT 1 CHECK (performed_count >= 1),
          request_count int NOT NULL DEFAULT 1 CHECK (request_count >= performed_count),
          performed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
          last_requested_at timestamptz NOT NULL DEFAULT clock_timestamp(),
          CHECK ((outcome = 'declined') = (decline_code IS NOT NULL AND decline_message IS NOT NULL))
        )`
      yield* sql`CREATE INDEX IF NOT EXISTS operations_payment ON acquirer_sim.operations (payment_id, operation)`
    })
  )

export class Acquirer extends Context.Service<Acquirer, {
  readonly authorize: (request: AuthorizeRequest) => Effect.Effect<AcquirerOutcome, AcquirerTimeout | AcquirerUnavailable>
  readonly capture: (request: CaptureRequest) => Effect.Effect<AcquirerOutcome, AcquirerTimeout | AcquirerUnavailable>
}>()("server/acquirer/Acquirer") {
  static readonly make = (options: AcquirerOptions) =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      // The acquirer's work outlives our call (a timeout on our side does not stop the bank);
      // it runs in the layer's scope and is interrupted only at shutdown.
      const scope = yield* Effect.scope
      if (!Number.isInteger(options.timeout_ms) || options.timeout_ms < 1) throw new Error("timeout_ms must be a positive integer")
      if (!Number.isInteger(options.latency_ms) || options.latency_ms < 0) throw new Error("latency_ms must be a non-negative integer")
      yield* ensureSchema(sql)

      /** The acquirer's own connection: never the caller's transaction (see the module comment). */
      const outsideCallerTransaction = <A, E>(self: Effect.Effect<A, E>): Effect.Effect<A, E> =>
        self.pipe(Effect.updateContext((context: Context.Context<never>) => Context.omit(sql.transactionService)(context)))

      const record = (
        operation: AcquirerOperation,
        request: { readonly reference: string; readonly paymentId: string; readonly amount_minor: bigint; readonly currency: string },
        decision: Decision
      ): Effect.Effect<OperationRow, SqlError> =>
        sql`
          INSERT INTO acquirer_sim.operations AS o
            (reference, operation, payment_id, amount_minor, currency, payment_method, outcome, decline_code,
             decline_message, acquirer_reference)
          VALUES (${request.reference}, ${operation}, ${request.paymentId}, ${request.amount_minor}, ${request.currency},
                  ${decision.paymentMethod}, ${decision.outcome}, ${decision.declineCode}, ${decision.declineMessage},
                  ${`acq_${randomUUID().replaceAll("-", "")}`})
          ON CONFLICT (reference) DO UPDATE
            SET request_count = o.request_count + 1, last_requested_at = clock_timestamp()
          RETURNING reference, operation, payment_id, amount_minor, currency, outcome, decline_code, decline_message,
                    acquirer_reference, payment_method, (xmax = 0) AS inserted`.pipe(
          Effect.flatMap(decodeOperationRows),
          Effect.catchTag("SchemaError", (error) => Effect.die(error)),
          Effect.flatMap(([row]) =>
            row === undefined ? Effect.die(new Error("INSERT … RETURNING returned no row")) : Effect.succeed(row)
          ),
          Effect.tap((row) =>
            // One reference, one operation: reusing a reference for different parameters is our bug.
            row.operation !== operation || row.payment_id !== request.paymentId ||
              row.amount_minor !== request.amount_minor || row.currency !== request.currency
              ? Effect.die(new Error(`acquirer reference ${request.reference} reused for a different ${operation}`))
              : Effect.void
          )
        )

      const toOutcome = (row: OperationRow): AcquirerOutcome =>
        row.outcome === "approved"
          ? new Approved({ acquirerReference: row.acquirer_reference })
          : new Declined({ code: row.decline_code ?? "card_declined", message: row.decline_message ?? "Declined." })

      const answerLost = (operation: AcquirerOperation, row: OperationRow): boolean => {
        const fault = operation === "authorize" ? options.faults.failAuthorizeAfterPerforming : options.faults.failCaptureAfterPerforming
        if (fault === "every_call") return true
        if (row.inserted && fault === "first_call") return true
        return row.inserted && row.payment_method === "pm_card_timeout"
      }

      /**
       * Our side of the call: the acquirer's work is forked (it completes whatever we do), and we
       * wait for its answer at most `timeout_ms`.
       */
      const call = (
        operation: AcquirerOperation,
        reference: string,
        acquirerSide: Effect.Effect<{ readonly outcome: AcquirerOutcome; readonly lost: boolean }, SqlError>
      ) =>
        Effect.gen(function* () {
          if (options.faults.unavailable === true) {
            yield* Effect.sleep(options.latency_ms)
            return yield* new AcquirerUnavailable({ operation, reference, detail: "connection refused (simulated)" })
          }
          const fiber = yield* Effect.forkIn(
            Effect.sleep(options.latency_ms).pipe(Effect.andThen(acquirerSide), outsideCallerTransaction),
            scope
          )
          return yield* Fiber.join(fiber).pipe(
            // A lost answer: the operation happened, but nothing comes back.
            Effect.flatMap((answer) => (answer.lost ? Effect.never : Effect.succeed(answer.outcome))),
            Effect.timeout(options.timeout_ms),
            Effect.catchTags({
              TimeoutError: () => Effect.fail(new AcquirerTimeout({ operation, reference, timeout_ms: options.timeout_ms })),
              SqlError: (error) => Effect.fail(new AcquirerUnavailable({ operation, reference, detail: error.message }))
            })
          )
        }).pipe(Effect.withSpan(`Acquirer.${operation}`, { attributes: { reference } }))

      const authorize = (request: AuthorizeRequest) =>
        call(
          "authorize",
          request.reference,
          record("authorize", request, decideAuthorization(request.paymentMethod)).pipe(
            Effect.map((row) => ({ outcome: toOutcome(row), lost: answerLost("authorize", row) }))
          )
        )

      /** A capture is approved when it is covered by an approved authorization of the same payment. */
      const decideCapture = (request: CaptureRequest) =>
        sql<{ payment_method: string | null; amount_minor: bigint; currency: string }>`
          SELECT payment_method, amount_minor, currency FROM acquirer_sim.operations
          WHERE payment_id = ${request.paymentId} AND operation = 'authorize' AND outcome = 'approved'
          ORDER BY performed_at LIMIT 1`.pipe(
          Effect.map(([authorization]): Decision => {
            if (authorization === undefined) {
              return { outcome: "declined", declineCode: "card_declined", declineMessage: "No approved authorization to capture.", paymentMethod: null }
            }
            if (authorization.currency !== request.currency || request.amount_minor > authorization.amount_minor) {
              return {
                outcome: "declined",
                declineCode: "card_declined",
                declineMessage: "The capture exceeds the authorization.",
                paymentMethod: authorization.payment_method
              }
            }
            return { outcome: "approved", declineCode: null, declineMessage: null, paymentMethod: authorization.payment_method }
          })
        )

      const capture = (request: CaptureRequest) =>
        call(
          "capture",
          request.reference,
          decideCapture(request).pipe(
            Effect.flatMap((decision) => record("capture", request, decision)),
            Effect.map((row) => ({ outcome: toOutcome(row), lost: answerLost("capture", row) }))
          )
        )

      return Acquirer.of({ authorize, capture })
    })

  /** With explicit options. Needs `SqlClient` (the simulator keeps its records in schema `acquirer_sim`). */
  static readonly layerWith = (options: Partial<AcquirerOptions> = {}) =>
    Layer.effect(Acquirer, Acquirer.make({ ...defaultAcquirerOptions, ...options }))

  /**
   * Configured from `ACQUIRER_TIMEOUT_MS` (default 2000), `ACQUIRER_LATENCY_MS` (default 5) and
   * `ACQUIRER_FAULTS` (default none; see {@link AcquirerFaultName}).
   */
  static readonly layer = Layer.unwrap(
    Effect.gen(function* () {
      const config = yield* AcquirerOptionsConfig
      return Acquirer.layerWith(config)
    })
  )

  /** For fault tests, e.g. `Acquirer.layerFaulty({ failCaptureAfterPerforming: "first_call" })`. */
  static readonly layerFaulty = (faults: AcquirerFaults, options: Partial<Omit<AcquirerOptions, "faults">> = {}) =>
    Acquirer.layerWith({ ...options, faults })
}
