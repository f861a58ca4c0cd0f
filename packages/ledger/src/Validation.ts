import {
  AmountTooLarge,
  InvalidPosting,
  NonPositiveAmount,
  type PostingValidationError,
  TooFewLegs,
  TooManyLegs,
  Unbalanced
} from "./Errors.ts"
import { accountCodePattern, amountMinorMax, currencyPattern, limits, type PostingRequest, type Side } from "./Model.ts"

/**
 * The code half of "pair the checks": everything a posting must satisfy that can be known without
 * the database. The database checks the same rules again (constraints and triggers); a posting
 * that passes here and is refused there for one of these reasons is a bug, and is treated as one.
 */

export interface SidedLeg {
  readonly account: string
  readonly side: Side
  readonly amountMinor: bigint
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
  if (reference.length < 1 || reference.length > limits.referenceLengthMax || hasNul(reference)) {
    return new InvalidPosting({
      reference,
      reason: `the reference must have 1 to ${limits.referenceLengthMax} characters, none of them NUL`
    })
  }
  if (description.length < 1 || description.length > limits.descriptionLengthMax || hasNul(description)) {
    return new InvalidPosting({
      reference,
      reason: `the description must have 1 to ${limits.descriptionLengthMax} characters, none of them NUL`
    })
  }
  return undefined
}

const checkLeg = (reference: string, leg: SidedLeg): PostingValidationError | undefined => {
  if (!accountCodePattern.test(leg.account) || leg.account.length > limits.accountCodeLengthMax) {
    return new InvalidPosting({ reference, reason: `"${leg.account}" is not an account code` })
  }
  if (!currencyPattern.test(leg.currency)) {
    return new InvalidPosting({ reference, reason: `"${leg.currency}" is not a 3-letter uppercase currency code` })
  }
  if (leg.amountMinor <= 0n) {
    return new NonPositiveAmount({ reference, account: leg.account, amountMinor: leg.amountMinor })
  }
  if (leg.amountMinor > amountMinorMax) {
    return new AmountTooLarge({ reference, account: leg.account, amountMinor: leg.amountMinor, amountMinorMax })
  }
  return undefined
}

/** Debits = credits in every currency. bigint sums cannot overflow in JS. */
const checkBalance = (reference: string, legs: ReadonlyArray<SidedLeg>): Unbalanced | undefined => {
  const totals = new Map<string, { debitsMinor: bigint; creditsMinor: bigint }>()
  for (const leg of legs) {
    const total = totals.get(leg.currency) ?? { debitsMinor: 0n, creditsMinor: 0n }
    totals.set(
      leg.currency,
      leg.side === "debit"
        ? { ...total, debitsMinor: total.debitsMinor + leg.amountMinor }
        : { ...total, creditsMinor: total.creditsMinor + leg.amountMinor }
    )
  }
  for (const currency of [...totals.keys()].sort()) {
    const total = totals.get(currency)
    if (total !== undefined && total.debitsMinor !== total.creditsMinor) {
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
  if (legs.length > limits.legCountMax) {
    return new TooManyLegs({ reference, legCount: legs.length, legCountMax: limits.legCountMax })
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
  if (requests.length > limits.batchPostingCountMax) {
    return new InvalidPosting({
      reference: first.reference,
      reason: `a batch holds at most ${limits.batchPostingCountMax} postings, not ${requests.length}`
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
    if (legCount > limits.batchLegCountMax) {
      return new InvalidPosting({
        reference: request.reference,
        reason: `a batch holds at most ${limits.batchLegCountMax} legs in all`
      })
    }
    const problem = postingProblem(request)
    if (problem !== undefined) return problem
  }
  return undefined
}
