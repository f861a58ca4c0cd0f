import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { lookup } from "node:dns/promises"
import { createServer } from "node:http"
import { hostname } from "node:os"
import { loggableUrl } from "../src/DeliveryWorker.ts"
import { send } from "../src/Sender.ts"
import { checkTargetUrl, isAddressAllowed, isLoopbackAddress } from "../src/TargetUrl.ts"

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
      "not a url", `https://merchant.example/${"a".repeat(2_100)}`,
      // Empty labels name no host (a resolver may still answer them): `foo.localhost..` passed as an ordinary name.
      "https://foo.localhost../", "https://merchant..example/", "https://.merchant.example/"
    ]) assert.strictEqual(verdict(url, false), "Refused", url)
  })

  it("an IP literal must be global unicast: reserved, documentation and IPv4-embedding IPv6 forms are refused", () => {
    for (const url of ["https://1.1.1.1/hooks", "https://[2606:4700:4700::1111]/hooks", "https://8.8.8.8/"]) assert.strictEqual(verdict(url, false), "Allowed", url)
    for (const url of [
      // IPv4 special-purpose blocks the first rule missed: IETF assignments, documentation, 6to4 relay, reserved, broadcast.
      "https://192.0.0.1/", "https://192.0.2.1/", "https://198.51.100.7/", "https://203.0.113.9/", "https://192.88.99.1/",
      "https://240.0.0.1/", "https://255.255.255.255/",
      // IPv6 forms that embed an IPv4 address (NAT64, 6to4, Teredo, IPv4-compatible) and deprecated site-local.
      "https://[64:ff9b::7f00:1]/", "https://[64:ff9b::a00:1]/", "https://[2002:7f00:1::]/", "https://[2001::1]/",
      "https://[::7f00:1]/", "https://[fec0::1]/", "https://[100::1]/", "https://[2001:db8::1]/", "https://[ff02::1]/",
      // IPv6 outside 2000::/3, the only block IANA allocates global unicast from (no one routes these);
      // and 3fff::/20, documentation (RFC 9637), inside it.
      "https://[4000::1]/", "https://[8000::1]/", "https://[e000::1]/", "https://[3fff::1]/",
      // The mapped forms of loopback and private addresses, both spellings.
      "https://[::ffff:7f00:1]/", "https://[::ffff:127.0.0.1]/", "https://[::ffff:c0a8:101]/"
    ]) assert.strictEqual(verdict(url, false), "Refused", url)
    // The connect-time check says the same of the resolved address.
    for (const address of ["64:ff9b::a00:1", "2002:a00:1::", "192.0.2.1", "::ffff:10.0.0.1", "4000::1", "e000::1"]) assert.isFalse(isAddressAllowed(address, true), address)
    for (const address of ["93.184.216.34", "2606:4700:4700::1111"]) assert.isTrue(isAddressAllowed(address, false), address)
    assert.isTrue(isAddressAllowed("::1", true), "loopback in test mode")
    assert.isFalse(isAddressAllowed("::1", false), "loopback in production")
  })

  it("a port above 65535 is named as a port, not as \"not a URL\" (outside contract fuzz); leading zeros are the port they spell", () => {
    for (const url of ["https://merchant.example:65536/a", "https://merchant.example:99999999999999999999/a", "https://merchant.example:0/a"]) {
      const verdict = checkTargetUrl(url, false)
      assert.deepStrictEqual(verdict._tag === "Refused" ? verdict.reason : "allowed", "must have a port from 1 to 65535", url)
    }
    assert.strictEqual(checkTargetUrl("https://merchant.example:0008443/a", false)._tag, "Allowed")
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
      // The merchant reads this error through the API: it says why, not which address.
      if (refused._tag === "Unanswered") {
        assert.match(refused.error, /^refused: .* does not resolve to a public address$/)
        assert.notMatch(refused.error, /127\.|::1/)
      }
      // With loopback allowed (test mode), the same sender reaches the receiver over http.
      const answered = yield* send({ url: `http://127.0.0.1:${port}/`, headers: {}, body: "{}", timeout_ms: 2_000, allowLoopbackHttp: true })
      assert.strictEqual(answered._tag, "Answered")
      assert.strictEqual(requests, 1)
    }).pipe(Effect.scoped))
})

describe("a receiver's URL on a log line", () => {
  it("keeps scheme, host, port and path; drops the userinfo, the query (the merchant's own token, often) and the fragment", () => {
    assert.strictEqual(loggableUrl("https://user:pass@hooks.example.com:8443/in/pay?token=s3cr3t&x=1#frag"), "https://hooks.example.com:8443/in/pay")
    assert.strictEqual(loggableUrl("https://hooks.example.com/"), "https://hooks.example.com/")
    assert.strictEqual(loggableUrl("not a url"), "(unparseable)")
  })
})
