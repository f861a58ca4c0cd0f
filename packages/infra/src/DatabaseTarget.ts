/**
 * `user@host:port/database` of a Postgres URL, never its password: what the CLI says it works on,
 * and where a database failure happened (the migrations' failure too: Postgres.ts). A value that is not a URL is not echoed (it may be a
 * secret pasted in the wrong variable).
 */
export const databaseTarget = (url: string): string => {
  if (!URL.canParse(url)) return "(DATABASE_URL is not a URL)"
  const parsed = new URL(url)
  const user = parsed.username === "" ? "" : `${decodedOrAsIs(parsed.username)}@`
  return `${user}${parsed.hostname}:${parsed.port === "" ? "5432" : parsed.port}${decodedOrAsIs(parsed.pathname)}`
}

/** Percent-decoded, or as written when its escapes are malformed (`a%zz`): naming the target (or reading a URL's user) never fails. */
export const decodedOrAsIs = (text: string): string => {
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}
