import ipaddr from "ipaddr.js"
import { isIP } from "node:net"
import { URL_LENGTH_MAX } from "./Model.ts"

/**
 * Where webhooks may be sent (the SSRF guard). The rule:
 *
 * - `https://` to a host name or a public IP address: always.
 * - `http://` to a loopback address (`127.0.0.0/8`, `::1`, `localhost` and names under it): only when
 *   `allowLoopbackHttp` is set (`WEBHOOK_ALLOW_LOOPBACK_HTTP=true`, local and test mode).
 * - Nothing else: no other scheme, no credentials in the URL, no IP literal outside global
 *   unicast (private, link-local, unique-local, CGNAT, multicast, unspecified, reserved,
 *   unallocated (IPv6 outside 2000::/3) and
 *   documentation blocks, and the IPv6 forms that embed an IPv4 address: NAT64, 6to4, Teredo;
 *   cloud metadata at 169.254.169.254 among them), and, in production, no loopback either.
 *
 * A host name can resolve to a private address (or change what it resolves to after
 * registration): the sender checks the address it actually connects to with the same rule
 * (`isAddressAllowed`, in the socket's DNS lookup), so the check and the connection cannot
 * disagree. Redirects are never followed.
 */
export type UrlVerdict = { readonly _tag: "Allowed"; readonly url: URL } | { readonly _tag: "Refused"; readonly reason: string }

const refused = (reason: string): UrlVerdict => ({ _tag: "Refused", reason })

/**
 * An IP literal's special-purpose range (the IANA registries, as ipaddr.js keeps them: private,
 * loopback, link-local, CGNAT, multicast, reserved and documentation blocks; for IPv6 also NAT64,
 * 6to4 and Teredo, which embed an IPv4 address), `unicast` for a globally routable one, undefined
 * for a string that is not an IP address. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) is
 * classified as the IPv4 address it maps to.
 */
const globalUnicastV6 = ipaddr.parseCIDR("2000::/3")

const ipRange = (address: string): string | undefined => {
  const bare = address.replace(/^\[|\]$/g, "").toLowerCase()
  if (isIP(bare) === 0) return undefined
  const parsed = ipaddr.process(bare)
  const range = parsed.range()
  // ::/96 besides :: and ::1 held the deprecated IPv4-compatible form (::a.b.c.d); ipaddr.js calls it unicast.
  if (range === "unicast" && parsed.kind() === "ipv6" && parsed.match(ipaddr.parse("::"), 96)) return "ipv4Compatible"
  // IANA allocates global unicast from 2000::/3 only; ipaddr.js calls the unassigned rest (4000::, 8000::, e000::…) unicast too.
  if (range === "unicast" && parsed.kind() === "ipv6" && !parsed.match(globalUnicastV6)) return "unallocated"
  return range
}

/** Loopback addresses (where a test receiver listens). */
export const isLoopbackAddress = (address: string): boolean => ipRange(address) === "loopback"

/** Addresses no webhook may reach in any mode (besides loopback, which only test mode allows): any IP that is not global unicast. */
export const isInternalAddress = (address: string): boolean => {
  const range = ipRange(address)
  return range !== undefined && range !== "unicast"
}

/** The connect-time check of a resolved address. */
export const isAddressAllowed = (address: string, allowLoopbackHttp: boolean): boolean =>
  (allowLoopbackHttp && isLoopbackAddress(address)) || !isInternalAddress(address)

/**
 * `localhost`, and any name under it (`api.localhost`), with or without the root's trailing dot:
 * names reserved for loopback (RFC 6761 §6.3), which resolvers answer with 127.0.0.1 or ::1.
 */
const isLocalhostName = (host: string): boolean => /^(?:[^.]+\.)*localhost\.?$/.test(host)

/**
 * Spaces, tabs, line breaks and other controls in a URL being registered: the URL parser drops tabs
 * and line breaks wherever they are and trims the ends, so the endpoint would show one URL and be
 * called at another (outside attack review). Every Unicode space and line break, every control and
 * every invisible format character (bidirectional marks U+200E/U+200F/U+061C, zero-width U+200B,
 * U+FEFF, …), which the parser percent-encoded silently (outside contract fuzz: the contract says
 * they are refused), every other character that displays as nothing (Unicode's default-ignorable
 * code points: variation selectors, U+034F, the Hangul fillers…, and U+2800), which the host's IDNA
 * mapping dropped silently (`exa\u3164mple.com` was stored as `example.com`), and private-use and
 * unassigned code points (outside re-test). Refused; a receiver that needs one percent-encodes it,
 * and an international host name that needs U+200C/U+200D is sent in its `xn--` form.
 */
const unparsedCharacter = /[\s\p{Cc}\p{Cf}\p{Co}\p{Cn}\p{Zs}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}\u2800]/u
export const registeredUrlProblem = (raw: string): string | undefined => {
  const found = unparsedCharacter.exec(raw)?.[0]
  if (found === undefined) return undefined
  const codePoint = `U+${(found.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, "0")}`
  return `must not contain spaces, tabs, line breaks, control or invisible characters (${codePoint}; percent-encode them in the path or query)`
}

/**
 * The authority of a URL as the URL parser reads it for http(s): after the scheme's colon and any
 * slashes or backslashes (`https:\\host`, `https:/host`, `https:host` and `https:///host` all name
 * `host`: outside re-test), up to the path, query or fragment; its user information dropped.
 */
const writtenHost = (raw: string): string | undefined => /^[A-Za-z][A-Za-z0-9+.-]*:[\\/]*([^\\/?#]*)/u.exec(raw.trim())?.[1]?.split("@").at(-1)

/** The registration-time check (the sender checks again at connect time). */
export const checkTargetUrl = (raw: string, allowLoopbackHttp: boolean): UrlVerdict => {
  if (raw.length > URL_LENGTH_MAX) return refused(`must be at most ${URL_LENGTH_MAX} characters`)
  const written = writtenHost(raw)
  // A percent-encoded host is decoded, then mapped by IDNA, which drops invisible characters: a host
  // written `exa%E3%85%A4mple.com` was stored as `example.com` (outside re-test).
  if (written?.includes("%") === true) return refused("must not percent-encode its host (write an international name as it is, or in its xn-- form)")
  // An explicit port, read before the URL parser refuses one above 65535 as "not a URL".
  const port = written === undefined ? undefined : /:([0-9]+)$/u.exec(written)?.[1]
  if (port !== undefined && (Number(port) > 65_535 || Number(port) === 0)) return refused("must have a port from 1 to 65535")
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    return refused("must be an absolute URL")
  }
  if (url.username !== "" || url.password !== "") return refused("must not carry credentials")
  if (url.hash !== "") return refused("must not have a fragment")
  // The parser takes port 0, which no connection can reach.
  if (url.port === "0") return refused("must have a port from 1 to 65535")
  const host = url.hostname.replace(/^\[|\]$/g, "")
  // An empty label (`a..b`, `foo.localhost..`, a leading dot) names no host: resolvers differ on
  // what they do with it, so no rule below could be trusted to classify it.
  if (host.startsWith(".") || host.includes("..")) return refused("must have a valid host name")
  const loopback = isLocalhostName(host) || isLoopbackAddress(host)
  if (url.protocol === "http:") {
    if (allowLoopbackHttp && loopback) return { _tag: "Allowed", url }
    return refused(allowLoopbackHttp ? "http is allowed only to loopback addresses in test mode" : "must use https")
  }
  if (url.protocol !== "https:") return refused("must use https")
  if (loopback) return allowLoopbackHttp ? { _tag: "Allowed", url } : refused("must not point at a loopback address")
  if (isIP(host) !== 0 && isInternalAddress(host)) return refused("must not point at a private, link-local or reserved address")
  return { _tag: "Allowed", url }
}
