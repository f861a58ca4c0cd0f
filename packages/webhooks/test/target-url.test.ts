import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { lookup } from "node:dns/promises"
import { createServer } from "node:http"
import { hostname } from "node:os"
import { send } from "../src/Sender.ts"
import { checkTargetUrl, isLoopbackAddress } from "../src/TargetUrl.ts"

const verdict = (url: string, allowLoopbackHttp: boolean) => checkTargetUrl(url, allowLoopbackHttp)._tag

describe("webhook target URLs (SSRF guard)", () => {
  it("production: https to public hosts only", () => {
    assert.strictEqual(verdict("https://merchant.example/hooks", false), "Allowed")
    assert.strictEqual(verdict("https://93.184.216.34/hooks", false), "Allowed")
    for (const url of [
      "http://merchant.example/hooks", // not https
      "ftp://merchant.example/x",
      "https://user:pass@merchant.example/", // credentials
      "https://127.0.0.1/", "https://localhost/", "http://127.0.0.1:8080/", "https://[::1]/",
      // The names reserved for loopback, however written (RFC 6761): the trailing dot, a subdomain, capitals.
      "https://localhost./", "https://api.localhost/", "https://a.b.LOCALHOST./", "https://127.0.0.1./",
      "https://10.0.0.5/", "https://172.16.3.4/", "https://192.168.1.1/", "https://169.254.169.254/latest/meta-data",
      "https://100.64.0.1/", "https://0.0.0.0/", "https://[fd00::1]/", "https://[fe80::1]/", "https://[::ffff:10.0.0.1]/",
      "not a url", `https://merchant.example/${"a".repeat(2_100)}`
    ]) assert.strictEqual(verdict(url, false), "Refused", url)
  })

  it("test mode adds http to loopback, and nothing else", () => {
    assert.strictEqual(verdict("http://127.0.0.1:4000/hook", true), "Allowed")
    assert.strictEqual(verdict("http://localhost:4000/hook", true), "Allowed")
    assert.strictEqual(verdict("http://localhost.:4000/hook", true), "Allowed")
    // A name that merely contains "localhost" is an ordinary host name.
    assert.strictEqual(verdict("https://localhost.merchant.example/hook", false), "Allowed")
    assert.strictEqual(verdict("https://notlocalhost/hook", false), "Allowed")
    assert.strictEqual(verdict("http://[::1]:4000/hook", true), "Allowed")
    assert.strictEqual(verdict("http://10.0.0.5/hook", true), "Refused")
    assert.strictEqual(verdict("http://merchant.example/hook", true), "Refused")
    assert.strictEqual(verdict("https://169.254.169.254/", true), "Refused")
  })

  it.effect("the sender checks the address it connects to: a name that resolves to loopback is refused in production", () =>
    Effect.gen(function* () {
      let requests = 0
      const server = createServer((_, res) => {
        requests++
        res.end("ok")
      })
      yield* Effect.acquireRelease(
        Effect.callback<void>((resume) => {
          server.listen(0, "127.0.0.1", () => resume(Effect.void))
        }),
        () => Effect.sync(() => server.close())
      )
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      // The machine's own name (in /etc/hosts as 127.0.0.1 on these machines) passes the
      // registration check as a name; the guarded DNS lookup sees the loopback address and
      // refuses before connecting.
      const name = hostname()
      const resolved = yield* Effect.promise(() => lookup(name))
      assert.isTrue(isLoopbackAddress(resolved.address), `this test needs ${name} to resolve to loopback, got ${resolved.address}`)
      assert.strictEqual(checkTargetUrl(`https://${name}:${port}/`, false)._tag, "Allowed")
      const refused = yield* send({ url: `https://${name}:${port}/`, headers: {}, body: "{}", timeout_ms: 2_000, allowLoopbackHttp: false })
      assert.strictEqual(refused._tag, "Unanswered")
      if (refused._tag === "Unanswered") assert.match(refused.error, /^refused: .* resolves to 127\./)
      // With loopback allowed (test mode), the same sender reaches the receiver over http.
      const answered = yield* send({ url: `http://127.0.0.1:${port}/`, headers: {}, body: "{}", timeout_ms: 2_000, allowLoopbackHttp: true })
      assert.strictEqual(answered._tag, "Answered")
      assert.strictEqual(requests, 1)
    }).pipe(Effect.scoped))
})
