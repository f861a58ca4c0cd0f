// One error vocabulary: every error class the API answers with has its code in the catalog, its
// problem type declared in the OpenAPI document under the catalog's status (with `type` and `code`
// as constants), and every problem type the document declares is produced by some error class.
// The document is the one the server serves at /openapi.json (OpenApi.fromApi of the contract).
import { assert, describe, it } from "@effect/vitest"
import { AcquirerTimeout } from "@pay/acquirer"
import { DependencyUnavailable, InvalidRequest, PaymentsApi, problemContentType, problemType } from "@pay/api"
import { type ErrorCode, errorCatalog, errorCodes, PaymentNotFound, statusOf } from "@pay/domain"
import { Schema } from "effect"
import { OpenApi } from "effect/http-api"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { apiErrorClasses } from "../src/http/ApiErrors.ts"
import { problemDocument } from "../src/http/Problem.ts"

const document: unknown = JSON.parse(JSON.stringify(OpenApi.fromApi(PaymentsApi)))

const isObject = (value: unknown): value is { readonly [key: string]: unknown } =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const member = (value: unknown, ...path: ReadonlyArray<string>): unknown =>
  path.reduce<unknown>((at, key) => (isObject(at) ? at[key] : undefined), value)

/** A schema, with `$ref`s to components resolved. */
const resolve = (schema: unknown): unknown => {
  const ref = member(schema, "$ref")
  return typeof ref === "string" ? member(document, ...ref.replace("#/", "").split("/")) : schema
}

/** The problem schemas of one response: its schema, or each member of its `anyOf`. */
const problemSchemasOf = (response: unknown): ReadonlyArray<unknown> => {
  const schema = member(response, "content", problemContentType, "schema")
  const anyOf = member(schema, "anyOf")
  return (Array.isArray(anyOf) ? anyOf : schema === undefined ? [] : [schema]).map(resolve)
}

const constant = (schema: unknown, property: string): unknown => {
  const values = member(schema, "properties", property, "enum")
  return Array.isArray(values) && values.length === 1 ? values[0] : undefined
}

const Paths = Schema.Struct({
  paths: Schema.Record(Schema.String, Schema.Record(Schema.String, Schema.Struct({
    responses: Schema.optionalKey(Schema.Record(Schema.String, Schema.Unknown))
  })))
})

/** Every (status, type, code, title) the document declares, over all operations. */
const declared = Object.values(Schema.decodeUnknownSync(Paths)(document).paths).flatMap((item) =>
  Object.values(item).flatMap((operation) =>
    Object.entries(operation.responses ?? {}).flatMap(([status, response]) =>
      problemSchemasOf(response).map((schema) => ({
        status: Number(status),
        type: constant(schema, "type"),
        code: constant(schema, "code"),
        title: constant(schema, "title")
      }))
    )
  )
)

const healthCode = new DependencyUnavailable({ detail: "-", unavailable: [], checks: [] }).code
const emitted: ReadonlyArray<ErrorCode> = [...apiErrorClasses.map((errorClass) => errorClass.code), healthCode]

describe("error catalog ↔ error classes ↔ OpenAPI document", () => {
  it("every error class's problem type is declared under its catalog status, with type and code as constants", () => {
    for (const errorClass of apiErrorClasses) {
      const code = errorClass.code
      const found = declared.filter((entry) => entry.type === problemType(code))
      assert.isAbove(found.length, 0, `${errorClass.name} (${code}) is not in the document`)
      for (const entry of found) {
        assert.strictEqual(entry.status, statusOf(code), `${code}: declared status`)
        assert.strictEqual(entry.code, code, `${code}: code constant`)
        assert.strictEqual(entry.title, errorCatalog[code].title, `${code}: title`)
      }
    }
  })

  it("every problem type the document declares is produced by some error class", () => {
    const produced = new Set(emitted.map(problemType))
    const undeclaredProducers = [...new Set(declared.map((entry) => entry.type))].filter((type) => typeof type !== "string" || !produced.has(type))
    assert.deepStrictEqual(undeclaredProducers, [])
  })

  it("every catalog code is emitted by a class, and no two catalog rows are the same code", () => {
    assert.deepStrictEqual([...new Set(emitted)].sort(), [...errorCodes].sort())
  })

  it("docs/api.md's error table lists every catalog code with its status, and nothing else", () => {
    const table = readFileSync(fileURLToPath(new URL("../../../docs/api.md", import.meta.url)), "utf8")
      .split("\n")
      .filter((line) => /^\| \d{3} \|/.test(line))
      .flatMap((line) => {
        const [, status, codes] = line.split("|").map((cell) => cell.trim())
        return [...(codes ?? "").matchAll(/`([a-z_]+)`/g)].map((match) => [match[1], Number(status)] as const)
      })
    assert.deepStrictEqual(
      Object.fromEntries([...table].sort(([a], [b]) => String(a).localeCompare(String(b)))),
      Object.fromEntries([...errorCodes].sort().map((code) => [code, statusOf(code)]))
    )
  })

  it("a problem document is built from the error object: its code's type, title and status (acquirer_timeout is 503)", () => {
    const cases = [
      new AcquirerTimeout({ operation: "authorize", reference: "payment:pay_x:authorization", timeout_ms: 1 }),
      new PaymentNotFound({ paymentId: "pay_x" }),
      new InvalidRequest({ detail: "amount: is required", field: "amount" })
    ]
    assert.deepStrictEqual(cases.map(problemDocument), [
      {
        type: problemType("acquirer_timeout"),
        title: "Service unavailable",
        status: 503,
        detail: "the acquirer did not answer authorize payment:pay_x:authorization within 1 ms; the outcome is unknown. Retry with the same Idempotency-Key to finish it.",
        code: "acquirer_timeout"
      },
      { type: problemType("payment_not_found"), title: "Not found", status: 404, detail: "no payment pay_x", code: "payment_not_found" },
      { type: problemType("invalid_request"), title: "Invalid request", status: 400, detail: "amount: is required", code: "invalid_request", field: "amount" }
    ])
  })
})
