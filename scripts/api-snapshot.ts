/**
 * Records what the API answers to a scripted set of requests, byte for byte, so that two versions
 * of the code can be compared (a refactoring must not change a single answer).
 *
 *   node scripts/api-snapshot.ts record <repository root> <out.json>
 *   node scripts/api-snapshot.ts compare <before.json> <after.json>
 *
 * `record` runs the server of the given checkout (`node packages/server/src/main.ts`) on a fresh
 * database of its own, the local Redis (a key prefix of its own) and Kafka, creates two merchants
 * with that checkout's CLI, sends the requests one by one and writes every answer: status, the
 * headers that matter to a client, and the exact body. Ids and instants are replaced by stable
 * placeholders (`pay_#1`, `<instant>`) in order of appearance, so two runs compare equal when
 * the answers are the same. The stack must be up (`scripts/stack.sh up`). Not part of the suite:
 * it is the check a refactoring runs before and after.
 */
import { execFileSync, spawn, spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { pickFreePort } from "../packages/testkit/src/FreePort.ts"

interface Recorded {
  readonly name: string
  readonly request: string
  readonly status: number
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
}

const adminUrl = process.env["SNAPSHOT_ADMIN_DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres"
const keptHeaders = ["content-type", "idempotent-replayed", "retry-after", "www-authenticate"]
const requestTimeout_ms = 10_000
const startTimeout_ms = 60_000

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const psql = (sql: string) => execFileSync("psql", [adminUrl, "-v", "ON_ERROR_STOP=1", "-qc", sql], { stdio: "pipe" })

/** Placeholders for everything that differs from run to run, numbered by first appearance. */
const normalizer = () => {
  const seen = new Map<string, string>()
  const counters = new Map<string, number>()
  const stable = (kind: string, value: string) => {
    const known = seen.get(value)
    if (known !== undefined) return known
    const n = (counters.get(kind) ?? 0) + 1
    counters.set(kind, n)
    const placeholder = `${kind}#${n}`
    seen.set(value, placeholder)
    return placeholder
  }
  return (text: string): string =>
    text
      .replace(/pay_[0-9a-hjkmnp-tv-z]{24}/g, (id) => stable("pay_", id))
      .replace(/mer_[0-9a-hjkmnp-tv-z]{24}/g, (id) => stable("mer_", id))
      .replace(/\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z/g, "<instant>")
      .replace(/"latency_ms":\d+(\.\d+)?/g, "\"latency_ms\":<ms>")
}

const record = async (root: string, out: string) => {
  const run = randomBytes(4).toString("hex")
  const database = `pay_snapshot_${run}`
  const databaseUrl = adminUrl.replace(/\/[^/]*$/, `/${database}`)
  const port = await pickFreePort()
  const baseUrl = `http://127.0.0.1:${port}`
  psql(`CREATE DATABASE ${database}`)
  const env = {
    ...process.env,
    DATABASE_URL: databaseUrl,
    DATABASE_POOL_SIZE: "4",
    PORT: String(port),
    REDIS_KEY_PREFIX: `snap:${run}:`,
    KAFKA_TOPIC_PREFIX: `snap.${run}.`,
    OUTBOX_PUBLISHER_ENABLED: "false",
    // Nothing is published, so there is nothing to consume; no background group on the broker.
    CONSUMERS_ENABLED: "false",
    ACQUIRER_TIMEOUT_MS: "1000",
    COMPLETER_INTERVAL_MS: "600000",
    COMPLETER_ABANDONED_AFTER_MS: "600000"
  }
  const cli = (...args: Array<string>) => {
    const stdout = execFileSync(process.execPath, [join(root, "packages/cli/src/main.ts"), ...args], { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] })
    const parsed: unknown = JSON.parse(stdout.toString("utf8"))
    if (typeof parsed !== "object" || parsed === null || !("api_key" in parsed) || typeof parsed.api_key !== "string") {
      throw new Error(`unexpected CLI output ${stdout.toString("utf8")}`)
    }
    return parsed.api_key
  }
  // The schema first (the CLI's commands do not migrate; the server would, racing the CLI below).
  // A checkout older than `pnpm cli migrate` answers it with the usage (exit 2): its commands
  // still migrate themselves.
  const migrated = spawnSync(process.execPath, [join(root, "packages/cli/src/main.ts"), "migrate"], { cwd: root, env, stdio: ["ignore", "pipe", "pipe"], timeout: 120_000 })
  if (migrated.status !== 0 && migrated.status !== 2) throw new Error(`cli migrate failed (${migrated.status}): ${migrated.stderr.toString("utf8")}`)
  const server = spawn(process.execPath, [join(root, "packages/server/src/main.ts")], { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] })
  let output = ""
  server.stdout.on("data", (chunk: Buffer) => { output = (output + chunk.toString("utf8")).slice(-20_000) })
  server.stderr.on("data", (chunk: Buffer) => { output = (output + chunk.toString("utf8")).slice(-20_000) })
  try {
    const keyA = cli("merchants", "create", "Snapshot A")
    const keyB = cli("merchants", "create", "Snapshot B")
    const deadline = Date.now() + startTimeout_ms
    for (;;) {
      const live = await fetch(`${baseUrl}/health/live`, { signal: AbortSignal.timeout(1_000) }).then((r) => r.status, () => 0)
      if (live === 200) break
      if (Date.now() > deadline || server.exitCode !== null) throw new Error(`server did not start:\n${output}`)
      await sleep(100)
    }
    const recorded = await scenario(baseUrl, keyA, keyB)
    const normalize = normalizer()
    const snapshot = recorded.map((r) => ({ ...r, request: normalize(r.request), body: normalize(r.body) }))
    writeFileSync(out, `${JSON.stringify(snapshot, null, 2)}\n`)
    console.error(`[snapshot] ${snapshot.length} answers written to ${out}`)
  } finally {
    server.kill("SIGTERM")
    await new Promise<void>((resolve) => (server.exitCode !== null ? resolve() : server.once("exit", () => resolve())))
    psql(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`)
    const keys = execFileSync("redis-cli", ["--scan", "--pattern", `snap:${run}:*`]).toString("utf8").split("\n").filter((k) => k !== "")
    if (keys.length > 0) execFileSync("redis-cli", ["del", ...keys])
  }
}

interface Send {
  readonly method: string
  readonly path: string
  readonly apiKey?: string | undefined
  readonly authorization?: string
  readonly idempotencyKey?: string
  readonly body?: string
  readonly contentType?: string
}

const send = async (baseUrl: string, name: string, request: Send): Promise<Recorded> => {
  const headers: Record<string, string> = {}
  if (request.apiKey !== undefined) headers["authorization"] = `Bearer ${request.apiKey}`
  if (request.authorization !== undefined) headers["authorization"] = request.authorization
  if (request.idempotencyKey !== undefined) headers["idempotency-key"] = request.idempotencyKey
  if (request.body !== undefined) headers["content-type"] = request.contentType ?? "application/json"
  const response = await fetch(`${baseUrl}${request.path}`, {
    method: request.method,
    headers,
    ...(request.body === undefined ? {} : { body: request.body }),
    signal: AbortSignal.timeout(requestTimeout_ms)
  })
  const body = await response.text()
  const kept: Record<string, string> = {}
  for (const header of keptHeaders) {
    const value = response.headers.get(header)
    if (value !== null) kept[header] = value
  }
  return { name, request: `${request.method} ${request.path}`, status: response.status, headers: kept, body }
}

const idOf = (answer: Recorded): string => {
  const match = /"id":"(pay_[^"]+)"/.exec(answer.body)
  if (match?.[1] === undefined) throw new Error(`${answer.name}: no payment id in ${answer.body}`)
  return match[1]
}

const scenario = async (baseUrl: string, a: string, b: string): Promise<ReadonlyArray<Recorded>> => {
  const out: Array<Recorded> = []
  const go = async (name: string, request: Send) => {
    const answer = await send(baseUrl, name, request)
    out.push(answer)
    return answer
  }
  const create = (key: string, body: unknown, apiKey = a) =>
    ({ method: "POST", path: "/v1/payments", apiKey, idempotencyKey: key, body: JSON.stringify(body) })
  const visa = { amount: 1050, currency: "USD", payment_method: "pm_card_visa", description: "Order #1", metadata: { order_id: "1" } }

  await go("live", { method: "GET", path: "/health/live" })
  await go("ready", { method: "GET", path: "/health/ready" })
  const created = await go("create", create("c-1", visa))
  await go("create replay", create("c-1", visa))
  await go("create replay, other key order and spaces", { ...create("c-1", {}), body: `{ "metadata": {"order_id":"1"}, "description":"Order #1", "payment_method": "pm_card_visa", "currency":"USD", "amount":1050 }` })
  await go("create reused key, other body", create("c-1", { ...visa, amount: 2000 }))
  await go("create, quoted key replays", { ...create("c-1", visa), idempotencyKey: "\"c-1\"" })
  await go("create, no key", { method: "POST", path: "/v1/payments", apiKey: a, body: JSON.stringify(visa) })
  await go("create, empty key", create("", visa))
  await go("create, key with a tab", create("a\tb", visa))
  await go("create, key too long", create("k".repeat(256), visa))
  await go("create, broken quoting", create("\"abc", visa))
  await go("create, malformed JSON", { ...create("c-2", {}), body: "{\"amount\":1050," })
  await go("create, not an object", { ...create("c-3", {}), body: "[1,2]" })
  await go("create, amount as a string", create("c-4", { ...visa, amount: "1050" }))
  await go("create, amount 0", create("c-5", { ...visa, amount: 0 }))
  await go("create, amount 10.5", create("c-6", { ...visa, amount: 10.5 }))
  await go("create, amount too large", create("c-7", { ...visa, amount: 100_000_000_000 }))
  await go("create, unknown currency", create("c-8", { ...visa, currency: "XXY" }))
  await go("create, lowercase currency", create("c-9", { ...visa, currency: "usd" }))
  await go("create, card number as method", create("c-10", { ...visa, payment_method: "pm_4242424242424242" }))
  await go("create, metadata value not a string", create("c-11", { ...visa, metadata: { order: 7 } }))
  await go("create, unknown field", create("c-12", { ...visa, amount_minor: 1050 }))
  await go("create, missing amount", create("c-13", { currency: "USD", payment_method: "pm_card_visa" }))
  await go("create, empty body", { method: "POST", path: "/v1/payments", apiKey: a, idempotencyKey: "c-14" })
  await go("create, form-encoded", { ...create("c-15", {}), body: "amount=1050", contentType: "application/x-www-form-urlencoded" })
  await go("create, body over 64 KiB", create("c-16", { ...visa, description: "x".repeat(70 * 1024) }))
  await go("create, no Authorization", { ...create("c-17", visa), apiKey: undefined })
  await go("create, unknown key", { ...create("c-18", visa), apiKey: "sk_test_00000000000000000000000000000000" })
  await go("create, malformed key", { ...create("c-19", visa), apiKey: "not-a-key" })
  await go("create, Basic scheme", { ...create("c-20", visa), apiKey: undefined, authorization: `Basic ${Buffer.from(`${a}:`).toString("base64")}` })
  await go("create, Token scheme", { ...create("c-21", visa), apiKey: undefined, authorization: `Token ${a}` })
  await go("create, JPY with metadata", create("c-22", { amount: 1234, currency: "JPY", payment_method: "pm_card_mastercard" }))

  const id = idOf(created)
  const action = (verb: string, key: string, paymentId = id, apiKey = a, body?: string) =>
    ({ method: "POST", path: `/v1/payments/${paymentId}/${verb}`, apiKey, idempotencyKey: key, ...(body === undefined ? {} : { body }) })
  await go("retrieve", { method: "GET", path: `/v1/payments/${id}`, apiKey: a })
  await go("retrieve, other merchant", { method: "GET", path: `/v1/payments/${id}`, apiKey: b })
  await go("retrieve, unknown id", { method: "GET", path: "/v1/payments/pay_0000000000000000000000zz", apiKey: a })
  await go("retrieve, malformed id", { method: "GET", path: "/v1/payments/nope", apiKey: a })
  await go("settle before authorize", action("settle", "s-0"))
  await go("authorize, a body", action("authorize", "a-0", id, a, "{\"x\":1}"))
  await go("authorize, empty object body", action("authorize", "a-00", id, a, "{}"))
  await go("authorize", action("authorize", "a-1"))
  await go("authorize replay", action("authorize", "a-1"))
  await go("authorize again, new key", action("authorize", "a-2"))
  await go("authorize, other merchant", action("authorize", "a-3", id, b))
  await go("authorize, unknown payment", action("authorize", "a-4", "pay_0000000000000000000000zz"))
  await go("authorize, malformed id", action("authorize", "a-5", "nope"))
  await go("settle", action("settle", "s-1"))
  await go("settle replay", action("settle", "s-1"))
  await go("settle again, new key", action("settle", "s-2"))
  await go("authorize a settled payment", action("authorize", "a-6"))

  const declined = await go("create, declined card", create("d-1", { amount: 700, currency: "EUR", payment_method: "pm_card_declined" }))
  await go("authorize, declined", action("authorize", "d-2", idOf(declined)))
  await go("settle a failed payment", action("settle", "d-3", idOf(declined)))
  const poor = await go("create, insufficient funds", create("f-1", { amount: 900, currency: "KWD", payment_method: "pm_card_insufficient_funds" }))
  await go("authorize, insufficient funds", action("authorize", "f-2", idOf(poor)))

  const slow = await go("create, lost answer card", create("t-1", { amount: 500, currency: "EUR", payment_method: "pm_card_timeout" }))
  const slowId = idOf(slow)
  // While the first authorization waits for the lost answer, the same key is in use.
  const first = send(baseUrl, "authorize, answer lost (503)", action("authorize", "t-2", slowId))
  await sleep(300)
  await go("authorize, same key while in flight (409)", action("authorize", "t-2", slowId))
  out.push(await first)
  await go("authorize retried with the same key", action("authorize", "t-2", slowId))
  await go("authorize retried again (replay)", action("authorize", "t-2", slowId))

  await go("list", { method: "GET", path: "/v1/payments", apiKey: a })
  await go("list, limit 2", { method: "GET", path: "/v1/payments?limit=2", apiKey: a })
  await go("list, limit 0", { method: "GET", path: "/v1/payments?limit=0", apiKey: a })
  await go("list, limit abc", { method: "GET", path: "/v1/payments?limit=abc", apiKey: a })
  await go("list, limit 101", { method: "GET", path: "/v1/payments?limit=101", apiKey: a })
  await go("list, starting_after not an id", { method: "GET", path: "/v1/payments?starting_after=nope", apiKey: a })
  await go("list, starting_after unknown id", { method: "GET", path: "/v1/payments?starting_after=pay_0000000000000000000000zz", apiKey: a })
  await go("list, starting_after", { method: "GET", path: `/v1/payments?limit=1&starting_after=${id}`, apiKey: a })
  await go("list, other merchant", { method: "GET", path: "/v1/payments", apiKey: b })
  await go("list, no key", { method: "GET", path: "/v1/payments" })
  await go("balance", { method: "GET", path: "/v1/balance", apiKey: a })
  await go("balance, other merchant", { method: "GET", path: "/v1/balance", apiKey: b })
  await go("balance, no key", { method: "GET", path: "/v1/balance" })
  await go("openapi", { method: "GET", path: "/openapi.json" })
  return out
}

const compare = (beforeFile: string, afterFile: string) => {
  const read = (file: string): ReadonlyArray<Recorded> => JSON.parse(readFileSync(file, "utf8"))
  const before = read(beforeFile)
  const after = read(afterFile)
  let differences = 0
  for (let i = 0; i < Math.max(before.length, after.length); i++) {
    const x = before[i]
    const y = after[i]
    if (JSON.stringify(x) === JSON.stringify(y)) continue
    differences++
    console.log(`--- ${x?.name ?? y?.name} (${x?.request ?? y?.request})`)
    if (x?.status !== y?.status) console.log(`  status: ${x?.status} -> ${y?.status}`)
    if (JSON.stringify(x?.headers) !== JSON.stringify(y?.headers)) console.log(`  headers: ${JSON.stringify(x?.headers)} -> ${JSON.stringify(y?.headers)}`)
    if (x?.body !== y?.body) console.log(`  body before: ${x?.body.slice(0, 600)}\n  body after:  ${y?.body.slice(0, 600)}`)
  }
  console.log(`${before.length} answers before, ${after.length} after, ${differences} different`)
  process.exitCode = differences === 0 ? 0 : 1
}

const [command, first, second] = process.argv.slice(2)
if (command === "record" && first !== undefined && second !== undefined) await record(first, second)
else if (command === "compare" && first !== undefined && second !== undefined) compare(first, second)
else {
  console.error("usage: node scripts/api-snapshot.ts record <repository root> <out.json> | compare <before.json> <after.json>")
  process.exitCode = 2
}
