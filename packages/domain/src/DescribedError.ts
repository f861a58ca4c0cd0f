import type { Cause } from "effect"
import { Schema } from "effect"
import { type ErrorCode, statusOf } from "./ErrorCatalog.ts"

/**
 * The two ways an error class is declared here, so that each says what it is in one line:
 *
 * - `DescribedError<Self>()(tag, fields, message)`: a `Schema.TaggedError` whose `message` is
 *   computed from its payload (for logs and for people).
 * - `CodedError<Self>()(code, tag, fields, message)`: the same, for an error the API answers
 *   with: it carries its stable `code` (instance and static), and its `httpApiStatus` is the
 *   catalog's status for that code (ErrorCatalog.ts), written nowhere else.
 *
 * ```ts
 * export class PaymentNotFound extends CodedError<PaymentNotFound>()(
 *   "payment_not_found", "PaymentNotFound", { paymentId: Schema.String }, (e) => `no payment ${e.paymentId}`
 * ) {}
 * ```
 */
export type DescribedClass<Self, Tag extends string, Fields extends Schema.Struct.Fields, Brand = {}> = Schema.Class<
  Self,
  Schema.TaggedStruct<Tag, Fields>,
  Cause.YieldableError & Brand
>

export type CodedClass<Self, Tag extends string, Fields extends Schema.Struct.Fields, Code extends ErrorCode> =
  & DescribedClass<Self, Tag, Fields, { readonly code: Code }>
  & { readonly code: Code }

type Message<Fields extends Schema.Struct.Fields> = (error: Schema.Struct.Type<Fields>) => string

const describe = <Self, Brand, Tag extends string, Fields extends Schema.Struct.Fields>(
  tag: Tag,
  fields: Fields,
  message: Message<Fields>,
  annotations: { readonly httpApiStatus?: number } = {}
): DescribedClass<Self, Tag, Fields, Brand> => {
  const made = Schema.TaggedError<Self, Brand>()(tag, fields, annotations)
  // Only reachable when `Self` is left out, which the class declarations below never do.
  if (typeof made === "string") throw new Error(made)
  const described: DescribedClass<Self, Tag, Fields, Brand> = made
  Object.defineProperty(described.prototype, "message", {
    get(this: Schema.Struct.Type<Fields>) {
      return message(this)
    },
    configurable: true
  })
  return described
}

export const DescribedError = <Self = never>() =>
<const Tag extends string, const Fields extends Schema.Struct.Fields>(
  tag: Tag,
  fields: Fields,
  message: Message<Fields>
): DescribedClass<Self, Tag, Fields> => describe<Self, {}, Tag, Fields>(tag, fields, message)

export const CodedError = <Self = never>() =>
<const Code extends ErrorCode, const Tag extends string, const Fields extends Schema.Struct.Fields>(
  code: Code,
  tag: Tag,
  fields: Fields,
  message: Message<Fields>
): CodedClass<Self, Tag, Fields, Code> => {
  const base = describe<Self, { readonly code: Code }, Tag, Fields>(tag, fields, message, { httpApiStatus: statusOf(code) })
  Object.defineProperty(base.prototype, "code", { value: code, enumerable: false })
  return Object.assign(base, { code })
}
