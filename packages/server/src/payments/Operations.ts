import type { CreatePaymentBody } from "@pay/api"
import { AmountMinor, type MerchantId, PaymentId, type Payment } from "@pay/domain"
import type { Execution, Finished, IdempotencyLockLost, StoredResponse } from "@pay/idempotency"
import { type ChangeContext, PaymentRepository } from "@pay/payments"
import { SettlementPosting, type SettlementUnavailable } from "@pay/settlement"
import { Context, Effect, Layer, Option, Result, Schema } from "effect"
import { SqlClient } from "effect/sql"
import type { SqlError } from "effect/sql/SqlError"
import { Acquirer, type AcquirerTimeout, type AcquirerUnavailable } from "../acquirer/Acquirer.ts"
import { json, problem } from "../http/Problem.ts"
import { toPaymentJson } from "./PaymentJson.ts"

/** What a POST asks for, rebuilt identically by the handler and by the completer. */
export type Operation =
  | { readonly _tag: "create"; readonly body: CreatePaymentBody }
  | { readonly _tag: "authorize"; readonly paymentId: string }
  | { readonly _tag: "settle"; readonly paymentId: string }

/** Recovery points of the idempotency key, in the order a run passes them. */
export const RecoveryPoint = {
  started: "started",
  /** Our intent to call the acquirer is committed; the call may or may not have happened. */
  authorizationRequested: "authorization_requested",
  captureRequested: "capture_requested"
} as const

/** Errors that leave the outcome unknown or undecided: never stored, the key is released. */
export type Unfinished = AcquirerTimeout | AcquirerUnavailable | IdempotencyLockLost | SettlementUnavailable | SqlError

/** The acquirer's idempotency reference: one per payment and operation, so asking twice is safe. */
export const acquirerReference = (paymentId: string, operation: "authorization" | "capture") =>
  `payment:${paymentId}:${operation}`

const decodePaymentId = Schema.decodeUnknownOption(PaymentId)

const notFound = (paymentId: string) => problem(404, "payment_not_found", `no payment ${paymentId}`)

/**
 * The payment operations behind the idempotent POSTs. Each runs inside an idempotency execution
 * and ends with `execution.finish(response)` in the same transaction as its last write, so the
 * stored response and the work commit together. Domain refusals (not found, invalid transition)
 * are results and are stored; an unknown outcome is not.
 */
export class PaymentOperations extends Context.Service<PaymentOperations, {
  readonly execute: (
    merchantId: MerchantId,
    operation: Operation,
    context: ChangeContext,
    execution: Execution
  ) => Effect.Effect<Finished, Unfinished>
}>()("server/PaymentOperations") {
  static readonly layer = Layer.effect(
    PaymentOperations,
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const payments = yield* PaymentRepository
      const acquirer = yield* Acquirer
      const settlement = yield* SettlementPosting

      const finishWith = (execution: Execution, response: StoredResponse) =>
        sql.withTransaction(execution.finish(response))

      /** Loads the payment for an operation; a missing or malformed id is a stored 404. */
      const load = (merchantId: MerchantId, rawId: string) =>
        Option.match(decodePaymentId(rawId), {
          onNone: () => Effect.succeed(Option.none<Payment>()),
          onSome: (paymentId) =>
            payments.findById(merchantId, paymentId).pipe(
              Effect.map(Option.some),
              Effect.catchTag("PaymentNotFound", () => Effect.succeed(Option.none<Payment>()))
            )
        })

      const transitionProblem = (payment: Payment, command: string, to: string) =>
        problem(409, "invalid_transition", `payment ${payment.id} cannot ${command}: ${payment.status} -> ${to} is not an allowed transition`)

      const create = (merchantId: MerchantId, body: CreatePaymentBody, context: ChangeContext, execution: Execution) =>
        sql.withTransaction(
          Effect.gen(function* () {
            const payment = yield* payments.create(
              {
                merchant_id: merchantId,
                amount_minor: AmountMinor.make(BigInt(body.amount)),
                currency: body.currency,
                payment_method: body.payment_method,
                ...(body.description === undefined ? {} : { description: body.description }),
                ...(body.metadata === undefined ? {} : { metadata: body.metadata })
              },
              context
            ).pipe(Effect.catchTag("MerchantNotFound", (error) => Effect.die(error)))
            return yield* execution.finish(json(201, toPaymentJson(payment)))
          })
        )

      /**
       * Applies the command and stores the answer in one transaction. A refusal by the state
       * machine (someone else won the race) is a stored 409, like any decided outcome.
       */
      const applyAndFinish = (
        merchantId: MerchantId,
        payment: Payment,
        command: Parameters<PaymentRepository["Service"]["apply"]>[2],
        context: ChangeContext,
        execution: Execution,
        alsoInTransaction: (updated: Payment) => Effect.Effect<unknown, SettlementUnavailable>
      ) =>
        sql.withTransaction(
          payments.apply(merchantId, payment.id, command, context).pipe(
            Effect.tap(alsoInTransaction),
            Effect.flatMap((updated) => execution.finish(json(200, toPaymentJson(updated)))),
            Effect.catchTags({
              InvalidTransition: (error) =>
                execution.finish(problem(409, "invalid_transition", error.message)),
              ConcurrentModification: (error) =>
                execution.finish(problem(409, "concurrent_modification", error.message)),
              PaymentNotFound: () => execution.finish(notFound(payment.id))
            })
          )
        )

      /**
       * The prologue of a transition that calls the acquirer: load the payment (a stored 404 when
       * there is none); on a fresh run, check its status (a stored 409) and commit the recovery
       * point before the call, so a crash after it leaves a key that resumes right there.
       */
      const prepare = (
        merchantId: MerchantId,
        rawId: string,
        execution: Execution,
        step: { readonly from: Payment["status"]; readonly command: string; readonly to: string; readonly recoveryPoint: string }
      ) =>
        Effect.gen(function* () {
          const found = yield* load(merchantId, rawId)
          if (Option.isNone(found)) return Result.fail(yield* finishWith(execution, notFound(rawId)))
          const payment = found.value
          if (execution.record.recoveryPoint === RecoveryPoint.started) {
            if (payment.status !== step.from) {
              return Result.fail(yield* finishWith(execution, transitionProblem(payment, step.command, step.to)))
            }
            yield* execution.advance(step.recoveryPoint, { payment_id: payment.id })
          }
          return Result.succeed(payment)
        })

      const authorize = (merchantId: MerchantId, rawId: string, context: ChangeContext, execution: Execution) =>
        Effect.gen(function* () {
          const prepared = yield* prepare(merchantId, rawId, execution, {
            from: "CREATED",
            command: "authorize",
            to: "AUTHORIZED",
            recoveryPoint: RecoveryPoint.authorizationRequested
          })
          if (Result.isFailure(prepared)) return prepared.failure
          const payment = prepared.success
          const outcome = yield* acquirer.authorize({
            reference: acquirerReference(payment.id, "authorization"),
            paymentId: payment.id,
            amount_minor: payment.amount_minor,
            currency: payment.currency,
            paymentMethod: payment.payment_method
          })
          const command = outcome._tag === "Approved"
            ? { _tag: "authorize" as const }
            : { _tag: "decline" as const, failure_code: outcome.code, failure_message: outcome.message }
          return yield* applyAndFinish(merchantId, payment, command, context, execution, () => Effect.void)
        })

      const settle = (merchantId: MerchantId, rawId: string, context: ChangeContext, execution: Execution) =>
        Effect.gen(function* () {
          const prepared = yield* prepare(merchantId, rawId, execution, {
            from: "AUTHORIZED",
            command: "settle",
            to: "SETTLED",
            recoveryPoint: RecoveryPoint.captureRequested
          })
          if (Result.isFailure(prepared)) return prepared.failure
          const payment = prepared.success
          // Capture first, outside any database transaction; then the money moves in one commit.
          const outcome = yield* acquirer.capture({
            reference: acquirerReference(payment.id, "capture"),
            paymentId: payment.id,
            amount_minor: payment.amount_minor,
            currency: payment.currency
          })
          if (outcome._tag === "Declined") {
            return yield* applyAndFinish(
              merchantId,
              payment,
              { _tag: "fail", failure_code: outcome.code, failure_message: outcome.message },
              context,
              execution,
              () => Effect.void
            )
          }
          return yield* applyAndFinish(merchantId, payment, { _tag: "settle" }, context, execution, settlement.post)
        })

      const execute = (merchantId: MerchantId, operation: Operation, context: ChangeContext, execution: Execution) => {
        switch (operation._tag) {
          case "create":
            return create(merchantId, operation.body, context, execution)
          case "authorize":
            return authorize(merchantId, operation.paymentId, context, execution)
          case "settle":
            return settle(merchantId, operation.paymentId, context, execution)
        }
      }

      return PaymentOperations.of({
        execute: (merchantId, operation, context, execution) =>
          execute(merchantId, operation, context, execution).pipe(
            Effect.withSpan(`PaymentOperations.${operation._tag}`, {
              attributes: { merchant_id: merchantId, resumed: execution.resumed, recovery_point: execution.record.recoveryPoint }
            })
          )
      })
    })
  )
}
