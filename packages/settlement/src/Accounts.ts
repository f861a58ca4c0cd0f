import type { CurrencyCode } from "@pay/domain"
import type { AccountSpec } from "@pay/ledger"

/**
 * The accounts a settlement touches, per currency, created on first use (race-free
 * `ensureAccount`). Codes are readable: an operator can grep them. Reconciliation
 * (`packages/consumers/src/Reconciliation.ts`) matches these codes and the references below in SQL
 * by their formats: a change here changes it too (`consumers-reconciliation.test.ts` and `refund-events.test.ts` fail otherwise).
 * None may go negative: settlement only ever increases all three.
 */
export const acquirerReceivable = (currency: CurrencyCode): AccountSpec => ({
  code: `acquirer:receivable:${currency}`,
  type: "asset",
  currency,
  allowNegative: false
})

export const merchantPayable = (merchantId: string, currency: CurrencyCode): AccountSpec => ({
  code: `merchant:${merchantId}:payable:${currency}`,
  type: "liability",
  currency,
  allowNegative: false
})

export const platformFees = (currency: CurrencyCode): AccountSpec => ({
  code: `platform:fees:${currency}`,
  type: "revenue",
  currency,
  allowNegative: false
})

/** The settlement posting's reference: unique in the ledger, so it can exist once per payment. */
export const settlementReference = (paymentId: string): string => `payment:${paymentId}:settlement`
