import { isIP } from "node:net"
import { URL_LENGTH_MAX } from "./Model.ts"

/**
 * Where webhooks may be sent (the SSRF guard). The rule:
 *
 * - `https://` to a host name or a public IP address: always.
 * - `http://` to a loopback address (`127.0.0.0/8`, `::1`, `localhost` and names under it): only when
 *   `allowLoopbackHttp` is set (`WEBHOOK_ALLOW_LOOPBACK_HTTP=true`, local and test mode).
 * - Nothing else: no other scheme, no credentials in the URL, no private, link-local,
 *   unique-local, multicast or unspecified address literals (cloud metadata at 169.254.169.254
 *   among them), and, in production, no loopback either.
 *
 * A host name can resolve to a private address (or change what it resolves to after
 * registration): the sender checks the address it actually connects to with the same rule
 * (`isAddressAllowed`, in the socket's DNS lookup), so the check and the connection cannot
 * disagree. Redirects are never followed.
 */
export type UrlVerdict = { readonly _tag: "Allowed"; readonly url: URL } | { readonly _tag: "Refused"; readonly reason: string }

const refused = (reason: string): UrlVerdict => ({ _tag: "Refused", reason })

const ipv4Parts = (address: string): ReadonlyArray<number> => address.split(".").map(Number)

/** `::ffff:a00:1` (how URL writes `::ffff:10.0.0.1`) and `::ffff:10.0.0.1` → `10.0.0.1`; else undefined. */
const mappedIpv4 = (bare: string): string | undefined => {
  if (!bare.startsWith("::ffff:")) return undefined
  const rest = bare.slice(7)
  if (isIP(rest) === 4) return rest
  const hex = /^([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(rest)
  if (hex === null || hex[1] === undefined || hex[2] === undefined) return undefined
  const high = parseInt(hex[1], 16)
  const low = parseInt(hex[2], 16)
  return `${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`
}

/** Loopback addresses (where a test receiver listens). */
export const isLoopbackAddress = (address: string): boolean => {
  const bare = address.replace(/^\[|\]$/g, "").toLowerCase()
  if (bare === "::1") return true
  const mapped = mappedIpv4(bare)
  if (mapped !== undefined) return isLoopbackAddress(mapped)
  return isIP(bare) === 4 && ipv4Parts(bare)[0] === 127
}

/** Addresses no webhook may reach in any mode (besides loopback, which only test mode allows). */
export const isInternalAddress = (address: string): boolean => {
  const bare = address.replace(/^\[|\]$/g, "").toLowerCase()
  const mapped = mappedIpv4(bare)
  if (mapped !== undefined) return isInternalAddress(mapped)
  if (isIP(bare) === 4) {
    const [a = 0, b = 0] = ipv4Parts(bare)
    return a === 0 || a === 10 || a === 127 || (a === 100 && b >= 64 && b <= 127) || (a === 169 && b === 254) ||
      (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || (a === 198 && (b === 18 || b === 19)) || a >= 224
  }
  if (isIP(bare) === 6) {
    // Unspecified, loopback, unique-local, link-local, multicast, and any other IPv4-embedding form.
    return bare === "::" || bare === "::1" || /^f[cd]/.test(bare) || /^fe[89ab]/.test(bare) || bare.startsWith("ff") || bare.startsWith("::")
  }
  return false
}

/** The connect-time check of a resolved address. */
export const isAddressAllowed = (address: string, allowLoopbackHttp: boolean): boolean =>
  (allowLoopbackHttp && isLoopbackAddress(address)) || !isInternalAddress(address)

/**
 * `localhost`, and any name under it (`api.localhost`), with or without the root's trailing dot:
 * names reserved for loopback (RFC 6761 §6.3), which resolvers answer with 127.0.0.1 or ::1.
 */
const isLocalhostName = (host: string): boolean => /^(?:[^.]+\.)*localhost\.?$/.test(host)

/** The registration-time check (the sender checks again at connect time). */
export const checkTargetUrl = (raw: string, allowLoopbackHttp: boolean): UrlVerdict => {
  if (raw.length > URL_LENGTH_MAX) return refused(`must be at most ${URL_LENGTH_MAX} characters`)
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    return refused("must be an absolute URL")
  }
  if (url.username !== "" || url.password !== "") return refused("must not carry credentials")
  if (url.hash !== "") return refused("must not have a fragment")
  const host = url.hostname.replace(/^\[|\]$/g, "")
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
