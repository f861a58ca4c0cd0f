import { Schema } from "effect"

/**
 * A whole-number argument of the command line, named in its refusal with its range in plain
 * digits (`offset must be a whole number from 0 to 4611686018427387904`), not Schema's default
 * ("Expected a string representing a bigint", "between 0n and …n"), which named neither the
 * argument nor a range an operator can type (outside operator review).
 */
export const wholeNumberArgument = (name: string, range: { readonly minimum: bigint; readonly maximum: bigint }) => {
  const message = `${name} must be a whole number from ${range.minimum} to ${range.maximum}`
  return Schema.String.check(Schema.isPattern(/^[0-9]{1,20}$/u, { message })).pipe(
    Schema.decodeTo(Schema.BigIntFromString.pipe(Schema.decodeTo(Schema.BigInt.check(Schema.isBetweenBigInt(range, { message })))))
  )
}

/** The same, as a number (a count or a limit: far below 2^53). */
export const countArgument = (name: string, range: { readonly minimum: number; readonly maximum: number }) => {
  const message = `${name} must be a whole number from ${range.minimum} to ${range.maximum}`
  return Schema.String.check(Schema.isPattern(/^[0-9]{1,15}$/u, { message })).pipe(
    Schema.decodeTo(Schema.NumberFromString.pipe(Schema.decodeTo(Schema.Int.check(Schema.isBetween(range, { message })))))
  )
}
