/**
 * `user@host:port/database` of a Postgres URL, never its password: what the CLI says it works on,
 * and where a database failure happened. A value that is not a URL is not echoed (it may be a
 * secret pasted in the wrong variable).
 */
export const databaseTarget = (url: string): string => {
  if (!URL.canParse(url)) return "(DATABASE_URL is not a URL)"
  const parsed = new URL(url)
  const user = parsed.username === "" ? "" : `${decoded(parsed.username)}@`
  return `${user}${parsed.hostname}:${parsed.port === "" ? "5432" : parsed.port}${decoded(parsed.pathname)}`
}

/** Percent-decoded, or as written when its escapes are malformed (`a%zz`): naming the target never fails. */
const decoded = (text: string): string => {
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}
