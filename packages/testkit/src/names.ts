import { randomBytes } from "node:crypto"

/** Short random lowercase id, safe inside database, topic and key names. */
export const shortId = (bytes = 4): string => randomBytes(bytes).toString("hex")

/** `postgres://u@h:p/db?x` with the database part replaced. */
export const withDatabase = (url: string, database: string): string => {
  const parsed = new URL(url)
  parsed.pathname = `/${database}`
  return parsed.toString()
}

export const runDatabasePrefix = (runId: string): string => `pay_t_${runId}`
