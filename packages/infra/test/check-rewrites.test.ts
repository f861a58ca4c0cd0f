// migrations/0072 rewrote the format CHECKs of the hot tables without bounded repetition (a
// `{1,100}` costs PostgreSQL's regex engine ~12 µs per row). A cheaper check that accepts one
// string the old one refused would be a hole in the database's half of an invariant, so this
// evaluates each constraint as the database now holds it (pg_get_constraintdef) and the old
// expression, in the same server, on the same inputs: valid values, every length around the
// bounds, a wrong character at each end and in the middle, case, whitespace, a newline, non-ASCII.
import { assert, it } from "@effect/vitest"
import { decodeRows } from "../src/index.ts"
import { makeTestDatabase } from "@pay/testkit"
import { Effect, Schema } from "effect"
import { SqlClient } from "effect/sql"

interface Rewritten {
  readonly table: string
  readonly constraint: string
  readonly column: string
  /** The expression before 0072, as its migration wrote it. */
  readonly before: string
  /** Strings the old check accepts (mutated into near misses below). */
  readonly valid: ReadonlyArray<string>
}

const idAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"
const idOf = (prefix: string, length: number) => prefix + Array.from({ length }, (_, index) => idAlphabet[(index * 7) % 32]).join("")
const hex = (length: number) => Array.from({ length }, (_, index) => "0123456789abcdef"[(index * 5) % 16]).join("")

const rewritten: ReadonlyArray<Rewritten> = [
  ...["processed_events", "consumer_offsets", "settlement_projection_live"].map((table) => ({
    table, constraint: `${table}_consumer_check`, column: "consumer",
    before: "consumer ~ '^[a-z0-9_.-]{1,100}$'", valid: ["settlement.g1", "a", "x".repeat(100), "web-hooks_2.b"]
  })),
  { table: "payments", constraint: "payments_id_check", column: "id", before: "id ~ '^pay_[0-9a-hjkmnp-tv-z]{24}$'", valid: [idOf("pay_", 24)] },
  {
    table: "payments", constraint: "payments_payment_method_check", column: "payment_method",
    before: "payment_method ~ '^pm_[A-Za-z0-9_]{1,64}$' AND payment_method !~ '[0-9]{12}'",
    valid: ["pm_card_visa", "pm_a", `pm_${"Z".repeat(64)}`, "pm_12345678901"]
  },
  ...["payments", "refunds"].map((table) => ({
    table, constraint: `${table}_failure_code_check`, column: "failure_code",
    before: "failure_code IS NULL OR failure_code ~ '^[a-z][a-z0-9_]{0,63}$'", valid: ["card_declined", "a", `a${"b".repeat(63)}`]
  })),
  {
    table: "payment_status_history", constraint: "payment_status_history_traceparent_check", column: "traceparent",
    before: "traceparent IS NULL OR traceparent ~ '^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$'",
    valid: [`00-${hex(32)}-${hex(16)}-01`]
  },
  { table: "idempotency_keys", constraint: "idempotency_keys_request_method_check", column: "request_method", before: "request_method ~ '^[A-Z]{1,16}$'", valid: ["POST", "A", "Z".repeat(16)] },
  { table: "idempotency_keys", constraint: "idempotency_keys_request_fingerprint_check", column: "request_fingerprint", before: "request_fingerprint ~ '^[0-9a-f]{64}$'", valid: [hex(64)] },
  { table: "idempotency_keys", constraint: "idempotency_keys_recovery_point_check", column: "recovery_point", before: "recovery_point ~ '^[a-z][a-z0-9_]{0,63}$'", valid: ["started", "a", `a${"9".repeat(63)}`] },
  { table: "webhook_deliveries", constraint: "webhook_deliveries_payment_id_check", column: "payment_id", before: "payment_id ~ '^pay_[0-9a-hjkmnp-tv-z]{24}$'", valid: [idOf("pay_", 24)] },
  { table: "webhook_deliveries", constraint: "webhook_deliveries_event_type_check", column: "event_type", before: "event_type ~ '^[a-z_]{1,64}$'", valid: ["payment_settled", "a", "_".repeat(64)] },
  { table: "webhook_deliveries", constraint: "webhook_deliveries_refund_id_check", column: "refund_id", before: "refund_id IS NULL OR refund_id ~ '^re_[0-9a-hjkmnp-tv-z]{24}$'", valid: [idOf("re_", 24)] },
  { table: "refunds", constraint: "refunds_id_check", column: "id", before: "id ~ '^re_[0-9a-hjkmnp-tv-z]{24}$'", valid: [idOf("re_", 24)] }
]

/** Near misses of a valid value: every length from 0 to one past it, a bad character at each place, case, spaces, newline, non-ASCII. */
const variants = (value: string): Array<string> => {
  const out = new Set<string>([value, "", " ", value.toUpperCase(), value.toLowerCase(), `${value}\n`, `\n${value}`, ` ${value}`, `${value} `])
  const last = value.at(-1) ?? "a"
  for (let length = 0; length <= value.length + 2; length++) out.add((value + last + last).slice(0, length))
  for (const bad of ["-", "_", ".", "A", "z", "é", "\t", "/", "0", "i", "l", "o", "u"]) {
    out.add(bad + value)
    out.add(value + bad)
    const middle = Math.floor(value.length / 2)
    out.add(value.slice(0, middle) + bad + value.slice(middle))
    out.add(value.slice(0, middle) + bad + value.slice(middle + 1))
  }
  // The traceparent's dashes moved by one, and the groups' lengths traded.
  if (value.split("-").length === 4) {
    const [a = "", b = "", c = "", d = ""] = value.split("-")
    // Each dash one place to the right, then to the left: same length, same count of dashes.
    out.add(`${a}${b.slice(0, 1)}-${b.slice(1)}-${c}-${d}`)
    out.add(`${a}-${b}${c.slice(0, 1)}-${c.slice(1)}-${d}`)
    out.add(`${a}-${b}-${c}${d.slice(0, 1)}-${d.slice(1)}`)
    out.add(`${a.slice(0, -1)}-${a.slice(-1)}${b}-${c}-${d}`)
    out.add(`${a}-${b.slice(0, -1)}-${b.slice(-1)}${c}-${d}`)
    out.add(`${a}-${b}-${c.slice(0, -1)}-${c.slice(-1)}${d}`)
    out.add(`${a}-${b}-${c}-${d}-`)
    out.add(`${a}-${b}-${c}${d}`)
  }
  return [...out]
}

const Definition = Schema.Struct({ definition: Schema.String })
const Verdicts = Schema.Struct({ before: Schema.NullOr(Schema.Boolean), after: Schema.NullOr(Schema.Boolean) })

/** A CHECK passes when its expression is true or null. */
const passes = (verdict: boolean | null) => verdict !== false

it.live("every format CHECK rewritten by 0072 accepts exactly what the old one accepted (valid values and near misses, in this server's regex engine)", () =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    let compared = 0
    for (const check of rewritten) {
      const [row] = yield* decodeRows(Definition)(sql`
        SELECT pg_get_constraintdef(c.oid) AS definition FROM pg_constraint c
        WHERE c.conrelid = ${check.table}::regclass AND c.conname = ${check.constraint} AND c.contype = 'c'`)
      assert.isDefined(row, `${check.table}.${check.constraint} exists`)
      const after = (row?.definition ?? "").replace(/^CHECK /, "")
      assert.notMatch(after, /\{\d+(,\d*)?\}\$/, `${check.constraint} holds no bounded repetition at its end any more`)
      const inputs = [null, ...check.valid.flatMap(variants)]
      for (const input of inputs) {
        // The column's name bound to the input: both expressions read it as they read the row.
        const [verdict] = yield* decodeRows(Verdicts)(sql.unsafe(
          `SELECT (${check.before}) AS before, ${after} AS after FROM (VALUES ($1::text)) AS t(${check.column})`,
          [input]
        ))
        assert.strictEqual(passes(verdict?.after ?? null), passes(verdict?.before ?? null),
          `${check.constraint} on ${JSON.stringify(input)}: before ${String(verdict?.before)}, after ${String(verdict?.after)}`)
        if (input !== null && check.valid.includes(input)) assert.isTrue(verdict?.after === true, `${check.constraint} accepts ${input}`)
        compared++
      }
    }
    assert.isAbove(compared, 500)
  }).pipe(Effect.provide(makeTestDatabase({ maxConnections: 1 }))))
