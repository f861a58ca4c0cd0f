// The document as an integrator's tools read it: a JSON Schema 2020-12 validator (Ajv) over every
// response (status declared for the operation, content type, body, required headers), and
// fast-check arbitraries made from the document's own request schemas.
import { Ajv2020 } from "ajv/dist/2020.js"
import addFormatsModule from "ajv-formats"
import * as fc from "fast-check"

type Json = { readonly [key: string]: unknown }
const isJson = (value: unknown): value is Json => typeof value === "object" && value !== null && !Array.isArray(value)
const member = (value: unknown, ...path: ReadonlyArray<string>): unknown =>
  path.reduce<unknown>((at, key) => (isJson(at) ? at[key] : undefined), value)

/** ajv-formats is CommonJS: its default export is the function under ESM interop. */
const addFormats = (ajv: Ajv2020) => {
  const plugin: unknown = addFormatsModule
  const fn = typeof plugin === "function" ? plugin : member(plugin, "default")
  if (typeof fn !== "function") throw new Error("ajv-formats did not load")
  fn(ajv)
}

export interface ObservedResponse {
  readonly method: string
  /** The path as sent (no query). */
  readonly path: string
  readonly status: number
  readonly headers: Headers
  readonly text: string
}

const pointer = (...segments: ReadonlyArray<string>) =>
  segments.map((segment) => segment.replaceAll("~", "~0").replaceAll("/", "~1")).join("/")

const documentId = "https://docs.payments.local/openapi.json"

export const makeContract = (document: Json) => {
  const ajv = new Ajv2020({ strict: false, allErrors: true, unicodeRegExp: true })
  addFormats(ajv)
  ajv.addSchema({ ...document, $id: documentId })
  const validators = new Map<string, ReturnType<Ajv2020["compile"]>>()
  const validate = (ref: string, value: unknown): string | undefined => {
    let validator = validators.get(ref)
    if (validator === undefined) {
      validator = ajv.compile({ $ref: `${documentId}#/${ref}` })
      validators.set(ref, validator)
    }
    return validator(value) ? undefined : ajv.errorsText(validator.errors, { separator: "; " })
  }
  const paths = isJson(document["paths"]) ? document["paths"] : {}
  const templates = Object.keys(paths).map((template) => ({
    template,
    pattern: new RegExp(`^${template.replace(/\{[^}]+\}/g, "[^/]+")}$`)
  }))

  /** Every way the response departs from the document; empty when it conforms. */
  const check = (observed: ObservedResponse): ReadonlyArray<string> => {
    const method = observed.method.toLowerCase() === "head" ? "get" : observed.method.toLowerCase()
    const template = templates.find((t) => t.pattern.test(observed.path))?.template
    const operationPath = template !== undefined && isJson(member(paths, template, method))
      ? ["paths", template, method]
      : unroutedOperation(observed)
    if (operationPath === undefined) return [`${observed.method} ${observed.path}: no operation in the document answers it (${observed.status})`]
    const responsePath = [...operationPath, "responses", String(observed.status)]
    const response = member(document, ...responsePath)
    if (!isJson(response)) return [`${responsePath.join(" ")}: status ${observed.status} is not declared (${observed.text.slice(0, 200)})`]
    const problems: Array<string> = []
    const contentType = (observed.headers.get("content-type") ?? "").split(";")[0]?.trim() ?? ""
    const content = member(response, "content", contentType)
    if (!isJson(content)) problems.push(`${responsePath.join(" ")}: content type ${contentType} is not declared`)
    else {
      let body: unknown
      try {
        body = JSON.parse(observed.text)
      } catch {
        problems.push(`${responsePath.join(" ")}: the body is not JSON: ${observed.text.slice(0, 200)}`)
      }
      const invalid = body === undefined ? undefined : validate(pointer(...responsePath, "content", contentType, "schema"), body)
      if (invalid !== undefined) problems.push(`${responsePath.join(" ")}: ${invalid} in ${observed.text.slice(0, 300)}`)
    }
    const headers = member(response, "headers")
    for (const [name, header] of Object.entries(isJson(headers) ? headers : {})) {
      const value = observed.headers.get(name)
      if (value === null) {
        if (member(header, "required") === true) problems.push(`${responsePath.join(" ")}: required header ${name} is missing`)
        continue
      }
      const invalid = validate(pointer(...responsePath, "headers", name, "schema"), value)
      if (invalid !== undefined) problems.push(`${responsePath.join(" ")}: header ${name}: ${invalid} (${value})`)
    }
    return problems
  }

  /**
   * A path no operation has: the document declares `route_not_found` and `method_not_allowed` on
   * the operations; the first operation that declares the status stands for it.
   */
  const unroutedOperation = (observed: ObservedResponse): ReadonlyArray<string> | undefined => {
    for (const template of Object.keys(paths)) {
      for (const method of Object.keys(isJson(paths[template]) ? paths[template] : {})) {
        if (isJson(member(paths, template, method, "responses", String(observed.status)))) return ["paths", template, method]
      }
    }
    return undefined
  }

  return { check, validate }
}

/**
 * A fast-check arbitrary of the values a JSON Schema (the subset this document uses) accepts:
 * objects with required and optional properties, strings with enum, pattern and lengths (in code
 * points), integers with bounds, arrays with item counts, `allOf` of those, `anyOf`.
 */
export const arbitraryOf = (schema: unknown): fc.Arbitrary<unknown> => {
  if (!isJson(schema)) return fc.constant(null)
  const all = Array.isArray(schema["allOf"]) ? schema["allOf"].filter(isJson) : []
  const merged: Json = all.reduce<Json>((at, part) => ({ ...at, ...part }), schema)
  if (Array.isArray(merged["enum"])) return fc.constantFrom(...merged["enum"])
  if (Array.isArray(merged["anyOf"])) return fc.oneof(...merged["anyOf"].map(arbitraryOf))
  switch (merged["type"]) {
    case "integer":
      return fc.integer({ min: Number(merged["minimum"] ?? -1e9), max: Number(merged["maximum"] ?? 1e9) })
    case "string":
      return stringOf(merged)
    case "object":
      return objectOf(merged)
    case "array":
      return fc.array(arbitraryOf(merged["items"]), { minLength: Number(merged["minItems"] ?? 0), maxLength: Math.min(Number(merged["maxItems"] ?? 5), 5) })
    default:
      return fc.constant(null)
  }
}

const codePoints = (text: string) => [...text].length

const stringOf = (schema: Json): fc.Arbitrary<string> => {
  const min = Number(schema["minLength"] ?? 0)
  const max = Number(schema["maxLength"] ?? 40)
  const pattern = typeof schema["pattern"] === "string" ? new RegExp(schema["pattern"], "u") : undefined
  const not = member(schema, "not", "pattern")
  const excluded = typeof not === "string" ? new RegExp(not, "u") : undefined
  // ASCII patterns (ids, tokens) are generated from the pattern; the text pattern (no NUL, no lone
  // surrogate) holds for every grapheme fast-check makes.
  const base = pattern !== undefined && !pattern.source.includes("\\u")
    ? fc.stringMatching(pattern)
    : fc.string({ unit: "grapheme", minLength: min, maxLength: Math.min(max, 60) })
  return base.filter((text) =>
    codePoints(text) >= min && codePoints(text) <= max && (pattern === undefined || pattern.test(text)) &&
    (excluded === undefined || !excluded.test(text))
  )
}

const objectOf = (schema: Json): fc.Arbitrary<unknown> => {
  const properties = isJson(schema["properties"]) ? schema["properties"] : undefined
  if (properties !== undefined) {
    const required = Array.isArray(schema["required"]) ? schema["required"].filter((key) => typeof key === "string") : []
    const model = Object.fromEntries(Object.entries(properties).map(([key, property]) => [key, arbitraryOf(property)]))
    return fc.record(model, { requiredKeys: required })
  }
  const keys = stringOf(isJson(schema["propertyNames"]) ? schema["propertyNames"] : { type: "string" })
  const values = arbitraryOf(schema["additionalProperties"])
  return fc.dictionary(keys, values, { maxKeys: Math.min(Number(schema["maxProperties"] ?? 5), 5) })
}
