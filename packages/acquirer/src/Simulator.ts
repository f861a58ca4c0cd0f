import { assertWithin, boundedInt } from "@pay/infra"
import { Config, Context, Effect, Fiber, Layer, Option, Schema, SchemaGetter } from "effect"
import { SqlClient, SqlSchema } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { randomUUID } from "node:crypto"
import {
  Acquirer,
  type AcquirerOperation,
  type AcquirerOutcome,
  AcquirerTimeout,
  AcquirerUnavailable,
  Approved,
  type AuthorizeRequest,
  type CaptureRequest,
  DeclineCode,
  Declined,
  type RefundRequest,
  type VoidRequest
} from "./Acquirer.ts"

/**
 * The simulated acquirer. Its memory is `acquirer_sim.operations` in Postgres
 * (`migrations/0007_acquirer_simulator.sql`), written on a connection that never joins the
 * caller's transaction. Tests read that table to prove "performed at most once"
 * (`performed_count` = 1, one row per payment and operation).
 *
 * Test payment methods (Stripe's names):
 * - `pm_card_visa`, `pm_card_mastercard`: approved.
 * - `pm_card_declined`: declined, `card_declined`.
 * - `pm_card_insufficient_funds`: declined, `insufficient_funds`.
 * - `pm_card_timeout`: the FIRST call for a reference is performed (approved) but its answer never
 *   arrives; our side fails with `AcquirerTimeout` after `timeout_ms`. Later calls with the same
 *   reference answer the recorded outcome promptly. (Captures and voids of such a payment behave the same.)
 *
 * Captures and voids of one payment are decided one at a time (an advisory lock per payment):
 * a capture after an approved void is declined, a void after an approved capture is declined.
 * - `pm_card_refund_declined`: authorized and captured; every refund is declined `refund_declined`.
 * - anything else: declined, `card_declined` (an unknown card).
 *
 * Refunds (reference `refund:<refund id>`) are approved while the approved refunds of the payment
 * plus this one stay within its approved capture.
 */

/** `first_call`: the first call per reference is performed but its answer is lost; `every_call`: every answer is lost. */
export type AnswerLoss = "first_call" | "every_call"

export interface AcquirerFaults {
  readonly failAuthorizeAfterPerforming?: AnswerLoss
  readonly failCaptureAfterPerforming?: AnswerLoss
  readonly failVoidAfterPerforming?: AnswerLoss
  readonly failRefundAfterPerforming?: AnswerLoss
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

/** | variable | default | bounds |: `ACQUIRER_TIMEOUT_MS` 2000 (1..120000), `ACQUIRER_LATENCY_MS` 5 (0..10000). */
export const acquirerOptionBounds = {
  timeout_ms: { min: 1, max: 120_000 },
  latency_ms: { min: 0, max: 10_000 }
} as const

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
  "void_answer_lost_first_call",
  "void_answer_lost_every_call",
  "refund_answer_lost_first_call",
  "refund_answer_lost_every_call",
  "unavailable"
])
export type AcquirerFaultName = typeof AcquirerFaultName.Type

export const acquirerFaultsFromNames = (names: ReadonlyArray<AcquirerFaultName>): AcquirerFaults => {
  const lost = (operation: AcquirerOperation): AnswerLoss | undefined =>
    names.includes(`${operation}_answer_lost_every_call`)
      ? "every_call"
      : names.includes(`${operation}_answer_lost_first_call`) ? "first_call" : undefined
  const failAuthorizeAfterPerforming = lost("authorize")
  const failCaptureAfterPerforming = lost("capture")
  const failVoidAfterPerforming = lost("void")
  const failRefundAfterPerforming = lost("refund")
  return {
    ...(failAuthorizeAfterPerforming === undefined ? {} : { failAuthorizeAfterPerforming }),
    ...(failCaptureAfterPerforming === undefined ? {} : { failCaptureAfterPerforming }),
    ...(failVoidAfterPerforming === undefined ? {} : { failVoidAfterPerforming }),
    ...(failRefundAfterPerforming === undefined ? {} : { failRefundAfterPerforming }),
    ...(names.includes("unavailable") ? { unavailable: true } : {})
  }
}

const acquirerFaultNames = Schema.Array(AcquirerFaultName).check(
  Schema.isMaxLength(9, { message: "ACQUIRER_FAULTS names at most 9 faults" })
)

/**
 * `ACQUIRER_FAULTS` as the environment holds it: one comma-separated string. (A bare
 * `Config.schema(Schema.Array(…))` expects a structured array; the environment's string is an
 * "incompatible shape" that `Config.withDefault` silently replaced by no faults at all, so the
 * kill test ran against an acquirer that answered every call, and passed only by timing.)
 * An unknown name fails at start-up. Built the way Effect's own `Config.Array` reads a separated
 * string, with the bound on the number of names kept.
 */
const acquirerFaultsFromEnv = Schema.String.pipe(Schema.decodeTo(Schema.toCodecStringTree(acquirerFaultNames), {
  decode: SchemaGetter.split(),
  encode: SchemaGetter.compose(
    SchemaGetter.passthrough<ReadonlyArray<string>, Schema.StringTree>({ strict: false }),
    SchemaGetter.transform((names) => names.join(","))
  )
}))

export const AcquirerOptionsConfig: Config.Config<AcquirerOptions> = Config.all({
  timeout_ms: boundedInt("ACQUIRER_TIMEOUT_MS", acquirerOptionBounds.timeout_ms, defaultAcquirerOptions.timeout_ms),
  latency_ms: boundedInt("ACQUIRER_LATENCY_MS", acquirerOptionBounds.latency_ms, defaultAcquirerOptions.latency_ms),
  faults: Config.schema(acquirerFaultsFromEnv, "ACQUIRER_FAULTS").pipe(
    Config.withDefault<ReadonlyArray<AcquirerFaultName>>([]),
    Config.map(acquirerFaultsFromNames)
  )
})

const OperationRow = Schema.Struct({
  reference: Schema.String,
  operation: Schema.Literals(["authorize", "capture", "void", "refund"]),
  payment_id: Schema.String,
  amount_minor: Schema.BigInt,
  currency: Schema.String,
  outcome: Schema.Literals(["approved", "declined"]),
  decline_code: Schema.NullOr(DeclineCode),
  decline_message: Schema.NullOr(Schema.String),
  acquirer_reference: Schema.String,
  payment_method: Schema.NullOr(Schema.String),
  request_count: Schema.Int
})
type OperationRow = typeof OperationRow.Type
const decodeOperationRows = Schema.decodeUnknownEffect(Schema.Array(OperationRow))

const AuthorizationRow = Schema.Struct({
  payment_method: Schema.NullOr(Schema.String),
  /** Whether an approved capture / void of the same payment exists (they exclude each other). */
  captured: Schema.Boolean,
  voided: Schema.Boolean,
  /** The approved capture's amount (null: none) and the refunds approved so far. */
  captured_minor: Schema.NullOr(Schema.BigInt),
  refunded_minor: Schema.BigInt,
  amount_minor: Schema.BigInt,
  currency: Schema.String
})

interface Decision {
  readonly outcome: "approved" | "declined"
  readonly declineCode: DeclineCode | null
  readonly declineMessage: string | null
  /** Decides whether the answer to the first call for a reference is lost. */
  readonly paymentMethod: string | null
}

const approved = (paymentMethod: string | null): Decision =>
  ({ outcome: "approved", declineCode: null, declineMessage: null, paymentMethod })
const declined = (declineCode: DeclineCode, declineMessage: string, paymentMethod: string | null): Decision =>
  ({ outcome: "declined", declineCode, declineMessage, paymentMethod })

const decideAuthorization = (paymentMethod: string): Decision => {
  switch (paymentMethod) {
    case "pm_card_visa":
    case "pm_card_mastercard":
    case "pm_card_timeout":
    case "pm_card_refund_declined":
      return approved(paymentMethod)
    case "pm_card_declined":
      return declined("card_declined", "Your card was declined.", paymentMethod)
    case "pm_card_insufficient_funds":
      return declined("insufficient_funds", "Your card has insufficient funds.", paymentMethod)
    default:
      return declined("card_declined", "Unknown card.", paymentMethod)
  }
}

/** A capture is approved when it is covered by an approved authorization of the same payment. */
const decideCapture = (request: CaptureRequest, authorization: Option.Option<typeof AuthorizationRow.Type>): Decision => {
  if (Option.isNone(authorization)) return declined("card_declined", "No approved authorization to capture.", null)
  const authorized = authorization.value
  if (authorized.voided) return declined("authorization_voided", "The authorization was voided.", authorized.payment_method)
  // One capture per authorization (a partial capture releases the rest).
  if (authorized.captured) return declined("authorization_captured", "The authorization was already captured.", authorized.payment_method)
  if (authorized.currency !== request.currency || request.amount_minor > authorized.amount_minor) {
    return declined("card_declined", "The capture exceeds the authorization.", authorized.payment_method)
  }
  return approved(authorized.payment_method)
}

/** A void releases an approved authorization that was not captured. */
const decideVoid = (authorization: Option.Option<typeof AuthorizationRow.Type>): Decision => {
  if (Option.isNone(authorization)) return declined("card_declined", "No approved authorization to void.", null)
  const authorized = authorization.value
  if (authorized.captured) return declined("authorization_captured", "The authorization was already captured.", authorized.payment_method)
  return approved(authorized.payment_method)
}

/** A refund gives back at most what was captured, across all refunds of the payment. */
const decideRefund = (request: RefundRequest, authorization: Option.Option<typeof AuthorizationRow.Type>): Decision => {
  if (Option.isNone(authorization) || authorization.value.captured_minor === null) {
    return declined("refund_declined", "No approved capture to refund.", null)
  }
  const authorized = authorization.value
  if (authorized.payment_method === "pm_card_refund_declined") {
    return declined("refund_declined", "The refund was declined.", authorized.payment_method)
  }
  if (authorized.currency !== request.currency || authorized.refunded_minor + request.amount_minor > (authorized.captured_minor ?? 0n)) {
    return declined("refund_declined", "The refunds exceed the captured amount.", authorized.payment_method)
  }
  return approved(authorized.payment_method)
}

const toOutcome = (row: OperationRow): AcquirerOutcome =>
  row.outcome === "approved"
    ? new Approved({ acquirerReference: row.acquirer_reference })
    : new Declined({ code: row.decline_code ?? "card_declined", message: row.decline_message ?? "Declined." })

interface RecordedRequest {
  readonly reference: string
  readonly paymentId: string
  readonly amount_minor: bigint
  readonly currency: string
}

/** The simulator's memory (`acquirer_sim.operations`): what it performed, once per reference. */
const operationsTable = (sql: SqlClient.SqlClient) => {
  const insert = (operation: AcquirerOperation, request: RecordedRequest, decision: Decision) => sql`
    INSERT INTO acquirer_sim.operations AS o
      (reference, operation, payment_id, amount_minor, currency, payment_method, outcome, decline_code,
       decline_message, acquirer_reference)
    VALUES (${request.reference}, ${operation}, ${request.paymentId}, ${request.amount_minor}, ${request.currency},
            ${decision.paymentMethod}, ${decision.outcome}, ${decision.declineCode}, ${decision.declineMessage},
            ${`acq_${randomUUID().replaceAll("-", "")}`})
    ON CONFLICT (reference) DO UPDATE
      SET request_count = o.request_count + 1, last_requested_at = clock_timestamp()
    RETURNING reference, operation, payment_id, amount_minor, currency, outcome, decline_code, decline_message,
              acquirer_reference, payment_method, request_count`.pipe(Effect.flatMap(decodeOperationRows))
  /**
   * Takes the payment's advisory lock (held to the end of the caller's transaction), THEN reads
   * the approved authorization and what was done with it: one call of a PL/pgSQL function whose
   * read gets a snapshot taken after the lock was granted (migrations/0073), so it sees what the
   * previous holder committed.
   */
  const lockedApproval = SqlSchema.findOneOption({
    Request: Schema.String,
    Result: AuthorizationRow,
    execute: (paymentId) => sql`
      SELECT payment_method, amount_minor, currency, captured, voided, captured_minor, refunded_minor
      FROM acquirer_sim.locked_approval(${paymentId})`
  })
  /**
   * Decide and record a capture or a void of one payment at a time: the advisory lock (released
   * at the end of this short transaction, on the simulator's own connection) keeps a capture and
   * a void of the same authorization from both being approved.
   */
  const decideOnePerPayment = <A extends RecordedRequest>(
    operation: "capture" | "void" | "refund",
    request: A,
    decide: (request: A, authorization: Option.Option<typeof AuthorizationRow.Type>) => Decision
  ): Effect.Effect<OperationRow, SqlError> =>
    sql.withTransaction(
      lockedApproval(request.paymentId).pipe(
        Effect.catchTag("SchemaError", Effect.die),
        Effect.flatMap((authorization) => record(operation, request, decide(request, authorization)))
      )
    )
  const record = (operation: AcquirerOperation, request: RecordedRequest, decision: Decision): Effect.Effect<OperationRow, SqlError> =>
    insert(operation, request, decision).pipe(
      // The table's constraints guarantee the row's shape, and INSERT … RETURNING returns one row.
      Effect.catchTag("SchemaError", Effect.die),
      Effect.flatMap(([row]) => row === undefined ? Effect.die(new Error("INSERT … RETURNING returned no row")) : Effect.succeed(row)),
      Effect.tap((row) =>
        // One reference, one operation: reusing a reference for different parameters is our bug.
        row.operation !== operation || row.payment_id !== request.paymentId ||
          row.amount_minor !== request.amount_minor || row.currency !== request.currency
          ? Effect.die(new Error(`acquirer reference ${request.reference} reused for a different ${operation}`))
          : Effect.void
      )
    )
  return { record, decideOnePerPayment }
}

const makeSimulator = (options: AcquirerOptions) =>
  Effect.gen(function* () {
    assertWithin("acquirer simulator", options, acquirerOptionBounds)
    const sql = yield* SqlClient.SqlClient
    // The acquirer's work outlives our call (a timeout on our side does not stop the bank);
    // it runs in the layer's scope and is interrupted only at shutdown.
    const scope = yield* Effect.scope
    const table = operationsTable(sql)

    /** The acquirer's own connection: never the caller's transaction (see the module comment). */
    const outsideCallerTransaction = <A, E>(self: Effect.Effect<A, E>): Effect.Effect<A, E> =>
      self.pipe(Effect.updateContext((context: Context.Context<never>) => Context.omit(sql.transactionService)(context)))

    const answerLost = (operation: AcquirerOperation, row: OperationRow): boolean => {
      const fault = operation === "authorize"
        ? options.faults.failAuthorizeAfterPerforming
        : operation === "capture"
        ? options.faults.failCaptureAfterPerforming
        : operation === "void" ? options.faults.failVoidAfterPerforming : options.faults.failRefundAfterPerforming
      if (fault === "every_call") return true
      // The first call is the one that inserted the row; a repeat only increments request_count.
      const firstCall = row.request_count === 1
      if (firstCall && fault === "first_call") return true
      return firstCall && row.payment_method === "pm_card_timeout"
    }
    /** A lost answer is logged, so a test can wait for the fault to have fired instead of guessing. */
    const loseAnswer = (operation: AcquirerOperation, reference: string) =>
      Effect.logInfo("acquirer simulator: answer lost (simulated fault)").pipe(
        Effect.annotateLogs({ operation, reference }),
        Effect.andThen(Effect.never)
      )
    if (Object.keys(options.faults).length > 0) {
      yield* Effect.logWarning("acquirer simulator: faults active (tests only)", { faults: options.faults })
    }

    /**
     * Our side of the call: the acquirer's work is forked (it completes whatever we do), and we
     * wait for its answer at most `timeout_ms`.
     */
    const call = (operation: AcquirerOperation, reference: string, acquirerSide: Effect.Effect<OperationRow, SqlError>) =>
      Effect.gen(function* () {
        if (options.faults.unavailable === true) {
          yield* Effect.sleep(options.latency_ms)
          return yield* new AcquirerUnavailable({ operation, reference, detail: "connection refused (simulated)" })
        }
        const fiber = yield* Effect.forkIn(Effect.sleep(options.latency_ms).pipe(Effect.andThen(acquirerSide), outsideCallerTransaction), scope)
        return yield* Fiber.join(fiber).pipe(
          // A lost answer: the operation happened, but nothing comes back.
          Effect.flatMap((row) => (answerLost(operation, row) ? loseAnswer(operation, reference) : Effect.succeed(toOutcome(row)))),
          Effect.timeout(options.timeout_ms),
          Effect.catchTags({
            TimeoutError: () => Effect.fail(new AcquirerTimeout({ operation, reference, timeout_ms: options.timeout_ms })),
            SqlError: (error) => Effect.fail(new AcquirerUnavailable({ operation, reference, detail: error.message }))
          })
        )
      }).pipe(Effect.withSpan(`Acquirer.${operation}`, { attributes: { reference } }))

    return Acquirer.of({
      authorize: (request: AuthorizeRequest) =>
        call("authorize", request.reference, table.record("authorize", request, decideAuthorization(request.paymentMethod))),
      capture: (request: CaptureRequest) =>
        call("capture", request.reference, table.decideOnePerPayment("capture", request, decideCapture)),
      void: (request: VoidRequest) =>
        call("void", request.reference, table.decideOnePerPayment("void", request, (_request, authorization) => decideVoid(authorization))),
      refund: (request: RefundRequest) => call("refund", request.reference, table.decideOnePerPayment("refund", request, decideRefund))
    })
  })

/** The simulator as the `Acquirer`. Needs `SqlClient` (its records live in schema `acquirer_sim`). */
export const AcquirerSimulator = {
  /** The service itself, in the caller's scope (its forked work lives there). */
  make: makeSimulator,
  /** With explicit options. */
  layerWith: (options: Partial<AcquirerOptions> = {}): Layer.Layer<Acquirer, never, SqlClient.SqlClient> =>
    Layer.effect(Acquirer, makeSimulator({ ...defaultAcquirerOptions, ...options })),
  /**
   * Configured from `ACQUIRER_TIMEOUT_MS` (default 2000), `ACQUIRER_LATENCY_MS` (default 5) and
   * `ACQUIRER_FAULTS` (default none; see {@link AcquirerFaultName}).
   */
  layer: Layer.unwrap(Effect.map(AcquirerOptionsConfig, (config) => Layer.effect(Acquirer, makeSimulator(config)))),
  /** For fault tests, e.g. `AcquirerSimulator.layerFaulty({ failCaptureAfterPerforming: "first_call" })`. */
  layerFaulty: (faults: AcquirerFaults, options: Partial<Omit<AcquirerOptions, "faults">> = {}) =>
    Layer.effect(Acquirer, makeSimulator({ ...defaultAcquirerOptions, ...options, faults }))
}
