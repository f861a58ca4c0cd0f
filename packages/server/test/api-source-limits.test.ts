// The failed-authentication limit per source address over real HTTP (the real server process),
// with each "client" and the "proxy" on an address of its own in 127.0.0.0/8:
// - under concurrency: of 300 unknown keys sent at once from one address, exactly the limit are
//   looked up and answered 401, every other one 429, and a valid key from another address is
//   unaffected (the limit used to be checked before the lookups and counted after them: 239-300
//   of 300-800 concurrent guesses were answered 401); concurrent valid keys from one address, more
//   than the limit, are all answered (they wait for a lookup in flight, never refused);
// - behind a proxy: X-Forwarded-For from a peer that is not in TRUSTED_PROXY_ADDRESSES changes
//   nothing; through a trusted one, each forwarded client is limited on its own, and the proxy's
//   other clients are not locked out.
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { getFrom, type SourcedAnswer } from "./support/FromAddress.ts"
import { createMerchant, TestServer, testServerLayer, unknownApiKey } from "./support/TestServer.ts"

const failures_max = 20
const proxy = "127.0.0.2"

const Live = testServerLayer({
  env: {
    RATE_LIMIT_AUTH_FAILURES_MAX: String(failures_max),
    RATE_LIMIT_AUTH_FAILURES_WINDOW_MS: "60000",
    TRUSTED_PROXY_ADDRESSES: proxy
  }
})



const histogram = (answers: ReadonlyArray<SourcedAnswer>) =>
  answers.reduce<Record<string, number>>((counts, answer) => {
    const label = `${answer.status} ${answer.code ?? ""}`.trim()
    counts[label] = (counts[label] ?? 0) + 1
    return counts
  }, {})

const assertStatus = (answer: SourcedAnswer, status: number, label: string) =>
  assert.strictEqual(answer.status, status, `${label}: ${answer.status} ${answer.body.slice(0, 300)}`)

layer(Live, { excludeTestServices: true, timeout: "120 seconds" })("the failed-authentication limit per source (real server process)", (it) => {
  it.effect("300 unknown keys at once from one address: exactly the limit looked up (401), the rest 429; another address unaffected", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const m = yield* createMerchant("Neighbour")
      const answers = yield* Effect.all(
        Array.from({ length: 300 }, () => getFrom("127.0.0.10", server.process.port, "/v1/balance", { apiKey: unknownApiKey() })),
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(
        histogram(answers),
        { "401 unauthorized": failures_max, "429 authentication_rate_limited": 300 - failures_max },
        "at most the limit of keys looked up, however many arrive at once"
      )
      assertStatus(yield* getFrom("127.0.0.10", server.process.port, "/v1/balance", { apiKey: m.apiKey }), 429, "valid key, same address")
      assertStatus(yield* getFrom("127.0.0.11", server.process.port, "/v1/balance", { apiKey: m.apiKey }), 200, "valid key, another address")
    }))

  it.effect("60 valid keys at once from one address, three times the limit: every one answered 200", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const merchants = yield* Effect.all([createMerchant("Busy A"), createMerchant("Busy B"), createMerchant("Busy C")])
      const answers = yield* Effect.all(
        Array.from({ length: 60 }, (_, i) =>
          getFrom("127.0.0.12", server.process.port, "/v1/balance", { apiKey: merchants[i % merchants.length]?.apiKey ?? "" })),
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(histogram(answers), { "200": 60 }, "valid keys wait for a place, never refused")
    }))

  it.effect("X-Forwarded-For from a peer that is not a trusted proxy is ignored: the peer is counted", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const m = yield* createMerchant("Spoofed")
      const from = (apiKey: string, forwardedFor: string) =>
        getFrom("127.0.0.13", server.process.port, "/v1/balance", { apiKey, headers: { "x-forwarded-for": forwardedFor } })
      for (let i = 0; i < failures_max; i++) assertStatus(yield* from(unknownApiKey(), `198.51.100.${i + 1}`), 401, `guess ${i + 1}`)
      assertStatus(yield* from(unknownApiKey(), "198.51.100.200"), 429, "a new spoofed address changes nothing")
      assertStatus(yield* from(m.apiKey, "198.51.100.201"), 429, "valid key, same peer")
      assertStatus(yield* getFrom("127.0.0.14", server.process.port, "/v1/balance", { apiKey: m.apiKey }), 200, "another peer")
    }))

  it.effect("through a trusted proxy, each forwarded client is limited on its own", () =>
    Effect.gen(function* () {
      const server = yield* TestServer
      const m = yield* createMerchant("Behind a balancer")
      const via = (apiKey: string, headers: Readonly<Record<string, string>> = {}) =>
        getFrom(proxy, server.process.port, "/v1/balance", { apiKey, headers })
      for (let i = 0; i < failures_max; i++) {
        assertStatus(yield* via(unknownApiKey(), { "x-forwarded-for": "198.51.100.7" }), 401, `guess ${i + 1} of 198.51.100.7`)
      }
      assertStatus(yield* via(unknownApiKey(), { "x-forwarded-for": "198.51.100.7" }), 429, "198.51.100.7 over its failures")
      assertStatus(yield* via(m.apiKey, { "x-forwarded-for": "198.51.100.7" }), 429, "198.51.100.7 with a valid key")
      // The proxy appends the address it saw to what the client sent: the client's own entries are left of it.
      assertStatus(yield* via(m.apiKey, { "x-forwarded-for": "203.0.113.1, 198.51.100.7" }), 429, "an entry the client wrote does not help")
      // The proxy writes X-Forwarded-For: a Forwarded header is the client's, never read.
      assertStatus(yield* via(m.apiKey, { "x-forwarded-for": "198.51.100.7", forwarded: "for=203.0.113.2" }), 429, "Forwarded is not read")
      assertStatus(yield* via(m.apiKey, { "x-forwarded-for": "198.51.100.8" }), 200, "another client of the proxy")
      assertStatus(yield* via(unknownApiKey(), { "x-forwarded-for": "198.51.100.8" }), 401, "another client's guess is looked up")
      assertStatus(yield* via(m.apiKey), 200, "the proxy itself (no header) is not locked out")
    }))
})
