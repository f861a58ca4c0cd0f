// The client's address behind trusted proxies (ClientAddress.ts): the peer unless it is trusted;
// through trusted proxies, the rightmost hop of the one header they write that is not trusted;
// anything malformed, the peer. TRUSTED_PROXY_ADDRESSES is bounded and a bad entry is refused when
// the configuration is read. (Over real HTTP, with the rate limit: api-source-limits.test.ts.)
import { assert, describe, it } from "@effect/vitest"
import { type Config, ConfigProvider, Effect, Option, Result } from "effect"
import { Headers, HttpServerRequest, HttpServerResponse } from "effect/http"
import { NetAddress } from "effect/net"
import { authenticationSourceOf, clientAddressOf, parseTrustedProxies, resolveClientAddress, type TrustedProxies, TrustedProxiesConfig } from "../src/http/ClientAddress.ts"

const read = <A>(config: Config.Config<A>, env: Record<string, string>) => Effect.result(config.parse(ConfigProvider.fromEnv({ env })))

const refusal = (env: Record<string, string>) =>
  Effect.gen(function* () {
    const result = yield* read(TrustedProxiesConfig, env)
    return Result.isFailure(result) ? String(result.failure) : assert.fail(`accepted ${JSON.stringify(env)}`)
  })

const proxiesOf = (list: string, header: TrustedProxies["header"] = "x-forwarded-for"): TrustedProxies => {
  const parsed = parseTrustedProxies(list, header)
  return Result.isSuccess(parsed) ? parsed.success : assert.fail(parsed.failure)
}

const trusts = (proxies: TrustedProxies, address: string) => proxies.trusts(NetAddress.ipFromStringUnsafe(address))

const client = (proxies: TrustedProxies, peer: string | undefined, headers: Record<string, string> = {}) =>
  clientAddressOf(proxies, peer, Headers.fromInput(headers))

describe("TRUSTED_PROXY_ADDRESSES and TRUSTED_PROXY_HEADER", () => {
  it.effect("unset: nobody is trusted, X-Forwarded-For is the header; addresses and CIDR networks of both families are taken", () =>
    Effect.gen(function* () {
      const none = yield* TrustedProxiesConfig.parse(ConfigProvider.fromEnv({ env: {} }))
      assert.deepStrictEqual([none.entries, none.header], [0, "x-forwarded-for"])
      assert.isFalse(trusts(none, "127.0.0.1"))
      const some = yield* TrustedProxiesConfig.parse(ConfigProvider.fromEnv({
        env: { TRUSTED_PROXY_ADDRESSES: " 10.0.0.0/8, 192.168.1.7,2001:db8::/32 , ::ffff:172.16.0.1,", TRUSTED_PROXY_HEADER: "forwarded" }
      }))
      assert.deepStrictEqual([some.entries, some.header], [4, "forwarded"])
      assert.deepStrictEqual(
        ["10.200.3.4", "11.0.0.1", "192.168.1.7", "192.168.1.8", "2001:db8:ffff::1", "2001:db9::1", "172.16.0.1"].map((a) => trusts(some, a)),
        [true, false, true, false, true, false, true],
        "an IPv4-mapped entry is its IPv4 address"
      )
    }))

  it.effect("a bad entry, too many entries or too long a list is refused when read, naming the entry", () =>
    Effect.gen(function* () {
      assert.include(yield* refusal({ TRUSTED_PROXY_ADDRESSES: "10.0.0.1, 10.0.0.300" }), "TRUSTED_PROXY_ADDRESSES: \"10.0.0.300\" is not an IP address")
      assert.include(yield* refusal({ TRUSTED_PROXY_ADDRESSES: "10.0.0.1/8" }), "\"10.0.0.1/8\" is not a CIDR network")
      assert.include(yield* refusal({ TRUSTED_PROXY_ADDRESSES: "10.0.0.0/33" }), "\"10.0.0.0/33\" is not a CIDR network")
      assert.include(yield* refusal({ TRUSTED_PROXY_ADDRESSES: "lb.internal" }), "\"lb.internal\" is not an IP address")
      assert.include(yield* refusal({ TRUSTED_PROXY_ADDRESSES: "0.0.0.0/0" }), "trusts every address")
      assert.include(yield* refusal({ TRUSTED_PROXY_ADDRESSES: "::/0" }), "trusts every address")
      assert.include(yield* refusal({ TRUSTED_PROXY_ADDRESSES: "::ffff:10.0.0.0/104" }), "write it as IPv4")
      const many = Array.from({ length: 101 }, (_, i) => `10.0.${Math.floor(i / 256)}.${i % 256}`).join(",")
      assert.include(yield* refusal({ TRUSTED_PROXY_ADDRESSES: many }), "TRUSTED_PROXY_ADDRESSES names at most 100 addresses or networks, got 101")
      assert.include(yield* refusal({ TRUSTED_PROXY_ADDRESSES: "1".repeat(4_097) }), "TRUSTED_PROXY_ADDRESSES must be at most 4096 characters")
      assert.include(yield* refusal({ TRUSTED_PROXY_HEADER: "x-real-ip" }), "TRUSTED_PROXY_HEADER")
    }))
})

describe("the source failed authentications are counted against", () => {
  it("an IPv4 address as it is; an IPv6 address by its /64 (a subscriber's allocation), so that one client's 2^64 addresses are one source", () => {
    assert.strictEqual(authenticationSourceOf("203.0.113.7"), "203.0.113.7")
    assert.strictEqual(authenticationSourceOf("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64")
    assert.strictEqual(authenticationSourceOf("2001:db8:1:2:ffff::1"), authenticationSourceOf("2001:db8:1:2::9"))
    assert.notStrictEqual(authenticationSourceOf("2001:db8:1:3::9"), authenticationSourceOf("2001:db8:1:2::9"))
    assert.strictEqual(authenticationSourceOf("unknown"), "unknown")
  })
})

describe("the client's address", () => {
  const proxies = proxiesOf("10.0.0.0/8")

  it("nobody trusted, or an untrusted peer: the peer (canonical), whatever the headers say", () => {
    const spoofed = { "x-forwarded-for": "198.51.100.7", forwarded: "for=198.51.100.8" }
    assert.strictEqual(client(proxiesOf(""), "10.0.0.5", spoofed), "10.0.0.5")
    assert.strictEqual(client(proxies, "203.0.113.9", spoofed), "203.0.113.9")
    assert.strictEqual(client(proxies, "::ffff:203.0.113.9", spoofed), "203.0.113.9")
    assert.strictEqual(client(proxies, "2001:DB8:0::1", spoofed), "2001:db8::1")
    assert.strictEqual(client(proxies, undefined, spoofed), undefined)
    assert.strictEqual(client(proxies, "/run/api.sock", spoofed), "/run/api.sock", "not an IP address: as it is")
  })

  it("a trusted peer: the rightmost hop not trusted; every hop trusted: the farthest", () => {
    const from = (forwardedFor: string) => client(proxies, "10.0.0.1", { "x-forwarded-for": forwardedFor })
    assert.strictEqual(from("198.51.100.7"), "198.51.100.7")
    assert.strictEqual(from("6.6.6.6, 198.51.100.7"), "198.51.100.7", "what the client wrote is left of what the proxy appended")
    assert.strictEqual(from("garbage, 198.51.100.7"), "198.51.100.7", "and never read")
    assert.strictEqual(from("198.51.100.7, 10.0.0.9, 10.1.2.3"), "198.51.100.7", "through a chain of trusted proxies")
    assert.strictEqual(from("10.0.0.9, 10.1.2.3"), "10.0.0.9")
    assert.strictEqual(from("198.51.100.7:5555"), "198.51.100.7")
    assert.strictEqual(from("[2001:db8::7]:443"), "2001:db8::7")
    assert.strictEqual(from("[2001:db8::7]"), "2001:db8::7")
    assert.strictEqual(from("::ffff:198.51.100.7"), "198.51.100.7")
    // Repeated header lines arrive joined with ", ".
    assert.strictEqual(client(proxies, "::ffff:10.0.0.1", { "x-forwarded-for": "6.6.6.6, 198.51.100.7" }), "198.51.100.7")
  })

  it("a trusted peer with a malformed chain, or none: the peer", () => {
    const from = (headers: Record<string, string>) => client(proxies, "10.0.0.1", headers)
    for (const forwardedFor of ["", "unknown", "198.51.100.7, garbage", "198.51.100.7,", "198.51.100.07", "[198.51.100.7]", "fe80::1%eth0"]) {
      assert.strictEqual(from({ "x-forwarded-for": forwardedFor }), "10.0.0.1", JSON.stringify(forwardedFor))
    }
    assert.strictEqual(from({}), "10.0.0.1")
    assert.strictEqual(from({ forwarded: "for=198.51.100.7" }), "10.0.0.1", "the proxies write X-Forwarded-For: Forwarded is not read")
    const long = Array.from({ length: 40 }, () => "10.0.0.9").join(", ")
    assert.strictEqual(from({ "x-forwarded-for": long }), "10.0.0.1", "more trusted hops than hops_max")
    assert.strictEqual(from({ "x-forwarded-for": `${long}, 198.51.100.7, 10.0.0.9` }), "198.51.100.7", "a long chain whose client is near its end")
  })

  it("Forwarded (RFC 7239) when the proxies write it: the `for=` of each element, quoted or not", () => {
    const forwarded = proxiesOf("10.0.0.0/8", "forwarded")
    const from = (headers: Record<string, string>) => client(forwarded, "10.0.0.1", headers)
    assert.strictEqual(from({ forwarded: "for=6.6.6.6, for=198.51.100.7;proto=https;by=10.0.0.1" }), "198.51.100.7")
    assert.strictEqual(from({ forwarded: "for=\"[2001:db8:cafe::17]:4711\"" }), "2001:db8:cafe::17")
    assert.strictEqual(from({ forwarded: "For=\"198.51.100.7:80\", for=10.0.0.3" }), "198.51.100.7")
    for (const value of ["for=unknown", "for=_hidden", "proto=https", "for=198.51.100.7;for=198.51.100.8", "for", "for=\"198.51.100.7"]) {
      assert.strictEqual(from({ forwarded: value }), "10.0.0.1", JSON.stringify(value))
    }
    assert.strictEqual(from({ "x-forwarded-for": "198.51.100.7" }), "10.0.0.1", "X-Forwarded-For is not read")
  })

  it.effect("the middleware: downstream, remoteAddress is the client and peerAddress the peer; the server span records client_address", () =>
    Effect.gen(function* () {
      const seen: Array<unknown> = []
      const app = Effect.gen(function* () {
        const request = yield* HttpServerRequest.HttpServerRequest
        const span = yield* Effect.currentSpan
        seen.push(Option.getOrUndefined(request.remoteAddress), Option.getOrUndefined(request.peerAddress), span.attributes.get("client_address"))
        return HttpServerResponse.empty()
      })
      const request = HttpServerRequest.fromWeb(
        new Request("http://api.test/v1/balance", { headers: { "x-forwarded-for": "6.6.6.6, 198.51.100.7" } })
      ).modify({ remoteAddress: Option.some("10.0.0.1") })
      yield* resolveClientAddress(proxies)(app).pipe(Effect.withSpan("server"), Effect.provideService(HttpServerRequest.HttpServerRequest, request))
      assert.deepStrictEqual(seen, ["198.51.100.7", "10.0.0.1", "198.51.100.7"])
    }))
})
