import type { StoredResponse } from "@pay/idempotency"
import { PaymentOutcome } from "@pay/payments"
import { json, problemResponse } from "../http/Problem.ts"
import { toPaymentJson, toRefundJson } from "./PaymentJson.ts"

/**
 * The HTTP answer to a payment use case's outcome: what is sent and, being decided, stored with
 * the idempotency key (the use case calls `execution.finish(outcome)`; the idempotency run stores
 * this rendering in the same transaction). Pure.
 */
export const renderOutcome = (outcome: PaymentOutcome): StoredResponse =>
  PaymentOutcome.$match(outcome, {
    Created: ({ payment }) => json(201, toPaymentJson(payment)),
    Transitioned: ({ payment }) => json(200, toPaymentJson(payment)),
    Refunded: ({ refund }) => json(201, toRefundJson(refund)),
    Refused: ({ error }) => problemResponse(error)
  })
