import { boundedString, configRefused } from "@pay/infra"
import { Config, Effect, Option, Result } from "effect"
import { type Headers, HttpMiddleware, HttpServerRequest } from "effect/http"
import { IpNetwork, NetAddress } from "effect/net"
import { BlockList } from "node:net"

/**
 * The client's address: what the failed-authentication limit counts per source (RateLimits.ts)
 * and the request's span records as `client_address`.
 *
 * It is the socket's peer, unless the peer is one of `TRUSTED_PROXY_ADDRESSES` (addresses and
 * CIDR networks; empty by default: nobody is trusted). Behind a trusted proxy, the client is the
 * rightmost hop of the forwarded chain that is not itself trusted: each proxy appends the address
 * it received the request from, so everything right of the first untrusted hop was written by our
 * proxies and everything left of it by whoever sent the request (a client may write any address
 * it likes there). Every hop trusted: the farthest one. A hop that is not an IP address (`unknown`,
 * an obfuscated name, garbage), a chain longer than `hops_max` trusted hops, or no header at all:
 * the peer, as without a proxy. An untrusted peer's headers are never read.
 *
 * The chain is read from one header, the one the proxies write (`TRUSTED_PROXY_HEADER`:
 * `X-Forwarded-For`, or RFC 7239 `Forwarded: for=`): a proxy that writes one passes the other
 * through as the client sent it, so reading both would let a client choose its own address.
 *
 * Effect's own `HttpMiddleware.xForwardedHeaders` reads `X-Forwarded-For` only and also rewrites
 * `Host` and the scheme from `X-Forwarded-Host`/`-Proto`, which nothing here needs (ADR 0014).
 * Matching uses Node's `net.BlockList`; parsing, Effect's `NetAddress` (IPv4-mapped IPv6 addresses
 * are matched and counted as the IPv4 address they carry).
 */

export const trustedProxyHeaders = ["x-forwarded-for", "forwarded"] as const
export type TrustedProxyHeader = (typeof trustedProxyHeaders)[number]

export const trustedProxyBounds = {
  /** `TRUSTED_PROXY_ADDRESSES` as written. */
  addresses: { length_max: 4_096 },
  /** Addresses and networks in it. */
  entries_max: 100,
  /** Hops of the forwarded chain looked at from the right: our proxies, then the client. */
  hops_max: 32
} as const

export interface TrustedProxies {
  /** Addresses and networks trusted (0: nobody; every client is its peer). */
  readonly entries: number
  readonly trusts: (address: NetAddress.IpAddress) => boolean
  /** The header the proxies write (the other is never read). */
  readonly header: TrustedProxyHeader
}

const familyOf = (address: NetAddress.IpAddress) => (NetAddress.isIpv4Address(address) ? "ipv4" : "ipv6")

/** Adds one entry of the list; what is wrong with it otherwise. */
const addEntry = (list: BlockList, entry: string): string | undefined => {
  if (entry.includes("/")) {
    const network = IpNetwork.fromString(entry)
    if (Result.isFailure(network)) return `is not a CIDR network (${network.failure.message})`
    const { address, prefixLength } = network.success
    if (prefixLength === 0) return "trusts every address: any client could then name its own"
    if (NetAddress.isIpv6Address(address) && Option.isSome(NetAddress.fromIpv4Mapped(address))) return "is an IPv4-mapped network: write it as IPv4"
    list.addSubnet(NetAddress.formatIp(address), prefixLength, familyOf(address))
    return undefined
  }
  const address = NetAddress.ipFromString(entry)
  if (Result.isFailure(address)) return `is not an IP address or a CIDR network (${address.failure.message})`
  const canonical = NetAddress.toCanonical(address.success)
  list.addAddress(NetAddress.formatIp(canonical), familyOf(canonical))
  return undefined
}

/** The trusted proxies of a comma-separated list; the message naming the first bad entry otherwise. */
export const parseTrustedProxies = (text: string, header: TrustedProxyHeader): Result.Result<TrustedProxies, string> => {
  const entries = text.split(",").map((entry) => entry.trim()).filter((entry) => entry.length > 0)
  if (entries.length > trustedProxyBounds.entries_max) {
    return Result.fail(`TRUSTED_PROXY_ADDRESSES names at most ${trustedProxyBounds.entries_max} addresses or networks, got ${entries.length}`)
  }
  const list = new BlockList()
  for (const entry of entries) {
    const wrong = addEntry(list, entry)
    if (wrong !== undefined) return Result.fail(`TRUSTED_PROXY_ADDRESSES: "${entry.slice(0, 100)}" ${wrong}`)
  }
  return Result.succeed({
    entries: entries.length,
    header,
    trusts: (address) => list.check(NetAddress.formatIp(address), familyOf(address))
  })
}

/** `TRUSTED_PROXY_ADDRESSES` and `TRUSTED_PROXY_HEADER`; a bad entry is a ConfigError at start-up. */
export const TrustedProxiesConfig: Config.Config<TrustedProxies> = Config.all({
  addresses: boundedString("TRUSTED_PROXY_ADDRESSES", trustedProxyBounds.addresses, ""),
  header: Config.Literals(trustedProxyHeaders, "TRUSTED_PROXY_HEADER").pipe(Config.withDefault<TrustedProxyHeader>("x-forwarded-for"))
}).pipe(Config.mapEffect(({ addresses, header }) => {
  const parsed = parseTrustedProxies(addresses, header)
  return Result.isSuccess(parsed) ? Effect.succeed(parsed.success) : configRefused(parsed.failure)
}))

/**
 * An address as a peer or a hop writes it: `IPv4`, `IPv6`, `[IPv6]`, `IPv4:port`, `[IPv6]:port`.
 * Canonical: an IPv4-mapped IPv6 address is its IPv4 address.
 */
export const parseHop = (text: string | undefined): NetAddress.IpAddress | undefined => {
  if (text === undefined) return undefined
  const hop = text.trim()
  const bracketed = hop.startsWith("[") && hop.endsWith("]")
  const ip = bracketed ? NetAddress.ipv6FromString(hop.slice(1, -1)) : NetAddress.ipFromString(hop)
  if (Result.isSuccess(ip)) return NetAddress.toCanonical(ip.success)
  const inet = NetAddress.inetAddressFromString(hop)
  return Result.isSuccess(inet) ? NetAddress.toCanonical(inet.success.address) : undefined
}

/**
 * The source failed authentications are counted against: an IPv4 client's address, an IPv6
 * client's /64 (one subscriber's usual allocation: counted per address, a client with a /64 had
 * 2^64 sources of 20 guesses each: outside security review). Anything that is not an address (a
 * Unix socket) as it is.
 */
export const authenticationSourceOf = (address: string): string => {
  const ip = parseHop(address)
  if (ip === undefined) return address
  if (!NetAddress.isIpv6Address(ip)) return NetAddress.formatIp(ip)
  const network = IpNetwork.fromAddress(ip, 64)
  return Result.isSuccess(network) ? IpNetwork.format(network.success) : address
}

/** The `for=` node of one `Forwarded` element (RFC 7239 §4), unquoted; undefined when it has none or two. */
const forwardedFor = (element: string): string | undefined => {
  let node: string | undefined
  for (const pair of element.split(";")) {
    const equals = pair.indexOf("=")
    if (equals === -1) return undefined
    if (pair.slice(0, equals).trim().toLowerCase() !== "for") continue
    if (node !== undefined) return undefined
    const value = pair.slice(equals + 1).trim()
    node = value.length >= 2 && value.startsWith("\"") && value.endsWith("\"") ? value.slice(1, -1) : value
  }
  return node
}

/** The addresses of the chain, right to left: the first one not trusted; every one trusted: the farthest. */
const walk = (proxies: TrustedProxies, elements: ReadonlyArray<string>): NetAddress.IpAddress | undefined => {
  let farthest: NetAddress.IpAddress | undefined
  const looked = Math.min(elements.length, trustedProxyBounds.hops_max)
  for (let hop = 1; hop <= looked; hop++) {
    const element = elements[elements.length - hop]
    const address = parseHop(element === undefined || proxies.header === "x-forwarded-for" ? element : forwardedFor(element))
    if (address === undefined) return undefined
    if (!proxies.trusts(address)) return address
    farthest = address
  }
  return elements.length <= trustedProxyBounds.hops_max ? farthest : undefined
}

/** The client's address (canonical) for a request from `peer` with `headers`; `peer` as it is when it is not an IP address. */
export const clientAddressOf = (proxies: TrustedProxies, peer: string | undefined, headers: Headers.Headers): string | undefined => {
  const peerAddress = parseHop(peer)
  if (peerAddress === undefined) return peer
  if (proxies.entries === 0 || !proxies.trusts(peerAddress)) return NetAddress.formatIp(peerAddress)
  // Repeated header lines arrive joined with ", " (Node), the same list as one line.
  const chain = headers[proxies.header]
  const client = chain === undefined ? undefined : walk(proxies, chain.split(","))
  return NetAddress.formatIp(client ?? peerAddress)
}

/**
 * The middleware: downstream, `request.remoteAddress` is the client's address and
 * `request.peerAddress` the socket's peer. (Effect's own server span sets `client.address` from
 * the peer before any middleware runs; `client_address` on the same span is this one.)
 */
export const resolveClientAddress = (proxies: TrustedProxies) =>
  HttpMiddleware.make((app) =>
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const client = clientAddressOf(proxies, Option.getOrUndefined(request.peerAddress), request.headers)
      if (client === undefined) return yield* app
      yield* Effect.annotateCurrentSpan("client_address", client)
      return yield* Effect.provideService(
        app,
        HttpServerRequest.HttpServerRequest,
        request.modify({ remoteAddress: Option.some(client), peerAddress: request.peerAddress })
      )
    })
  )
