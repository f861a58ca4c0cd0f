import {
  AmountTooLarge,
  InvalidPosting,
  NonPositiveAmount,
  type PostingValidationError,
  TooFewLegs,
  TooManyLegs,
  Unbalanced
} from "./Errors.ts"
import { isCurrencyCode } from "@pay/domain"
import { accountCodePattern, amount_minor_max, limits, type PostingRequest, type Side } from "./Model.ts"

/**
 * The code half of "pair the checks": everything a posting must satisfy that can be known without
 * the database. The database checks the same rules again (constraints and triggers); a posting
 * that passes here and is refused there for one of these reasons is a bug, and is treated as one.
 */

export interface SidedLeg {
  readonly account: string
  readonly side: Side
  readonly amount_minor: bigint
  readonly currency: string
}

/** Debits first, then credits: the order gives the entries their numbers. */
export const legsOf = (request: PostingRequest): ReadonlyArray<SidedLeg> => [
  ...request.debits.map((leg) => ({ ...leg, side: "debit" as const })),
  ...request.credits.map((leg) => ({ ...leg, side: "credit" as const }))
]

// NUL cannot be stored in a PostgreSQL text value.
const hasNul = (text: string) => text.includes("\u0000")

const checkText = (reference: string, description: string): InvalidPosting | undefined => {
  if (reference.length < 1 || reference.length > limits.referenceLength_max || hasNul(reference)) {
    return new InvalidPosting({
      reference,
      reason: `the reference must have 1 to ${limits.referenceLength_max} characters, none of them NUL`
    })
  }
  if (description.length < 1 || description.length > limits.descriptionLength_max || hasNul(description)) {
    return new InvalidPosting({
      reference,
      reason: `the description must have 1 to ${limits.descriptionLength_max} characters, none of them NUL`
    })
  }
  return undefined
}

const checkLeg = (reference: string, leg: SidedLeg): PostingValidationError | undefined => {
  if (!accountCodePattern.test(leg.account) || leg.account.length > limits.accountCodeLength_max) {
    return new InvalidPosting({ reference, reason: `"${leg.account}" is not an account code` })
  }
  if (!isCurrencyCode(leg.currency)) {
    return new InvalidPosting({ reference, reason: `"${leg.currency}" is not a supported ISO 4217 currency code` })
  }
  if (leg.amount_minor <= 0n) {
    return new NonPositiveAmount({ reference, account: leg.account, amount_minor: leg.amount_minor })
  }
  if (leg.amount_minor > amount_minor_max) {
    return new AmountTooLarge({ reference, account: leg.account, amount_minor: leg.amount_minor, amount_minor_max })
  }
  return undefined
}

/** Debits = credits in every currency. bigint sums cannot overflow in JS. */
const checkBalance = (reference: string, legs: ReadonlyArray<SidedLeg>): Unbalanced | undefined => {
  const totals = new Map<string, { debits_minor: bigint; credits_minor: bigint }>()
  for (const leg of legs) {
    const total = totals.get(leg.currency) ?? { debits_minor: 0n, credits_minor: 0n }
    totals.set(
      leg.currency,
      leg.side === "debit"
        ? { ...total, debits_minor: total.debits_minor + leg.amount_minor }
        : { ...total, credits_minor: total.credits_minor + leg.amount_minor }
    )
  }
  for (const currency of [...totals.keys()].sort()) {
    const total = totals.get(currency)
    if (total !== undefined && total.debits_minor !== total.credits_minor) {
      return new Unbalanced({ reference, currency, ...total })
    }
  }
  return undefined
}

/** The first reason this posting must be refused, or undefined when it may be sent. */
export const postingProblem = (request: PostingRequest): PostingValidationError | undefined => {
  const { reference } = request
  const textProblem = checkText(reference, request.description)
  if (textProblem !== undefined) return textProblem
  const legs = legsOf(request)
  if (legs.length < 2) return new TooFewLegs({ reference, legCount: legs.length })
  if (legs.length > limits.legCount_max) {
    return new TooManyLegs({ reference, legCount: legs.length, legCount_max: limits.legCount_max })
  }
  for (const leg of legs) {
    const legProblem = checkLeg(reference, leg)
    if (legProblem !== undefined) return legProblem
  }
  return checkBalance(reference, legs)
}

/** A batch: bounded in postings and legs, one reference per posting, every posting valid. */
export const batchProblem = (requests: ReadonlyArray<PostingRequest>): PostingValidationError | undefined => {
  const first = requests[0]
  if (first === undefined) return new InvalidPosting({ reference: "", reason: "a batch needs at least one posting" })
  if (requests.length > limits.batchPostingCount_max) {
    return new InvalidPosting({
      reference: first.reference,
      reason: `a batch holds at most ${limits.batchPostingCount_max} postings, not ${requests.length}`
    })
  }
  let legCount = 0
  const references = new Set<string>()
  for (const request of requests) {
    if (references.has(request.reference)) {
      return new InvalidPosting({ reference: request.reference, reason: "the reference appears twice in this batch" })
    }
    references.add(request.reference)
    legCount += request.debits.length + request.credits.length
    if (legCount > limits.batchLegCount_max) {
      return new InvalidPosting({
        reference: request.reference,
        reason: `a batch holds at most ${limits.batchLegCount_max} legs in all`
      })
    }
    const problem = postingProblem(request)
    if (problem !== undefined) return problem
  }
  return undefined
}
