// `since` (webhook recovery) takes an RFC 3339 instant: a date that exists in the proleptic
// Gregorian calendar, a time and an offset.
import { assert, describe, it } from "@effect/vitest"
import { isRfc3339Instant } from "../src/WebhooksApi.ts"

describe("isRfc3339Instant", () => {
  it("leap days by the proleptic Gregorian rule, years 0-99 included (0000-02-29 was refused: Date.UTC reads them as 1900-1999)", () => {
    for (const text of ["0000-02-29T00:00:00Z", "0004-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "2024-02-29T23:59:59.5+01:00"]) assert.isTrue(isRfc3339Instant(text), text)
    for (const text of ["0100-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2026-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-13-01T00:00:00Z"]) assert.isFalse(isRfc3339Instant(text), text)
  })

  it("an offset is required, a leap second and Date.parse's guesses are not instants", () => {
    for (const text of ["2026-12-01T10:00:00", "2026-12-01", "1", "2026-12-01T23:59:60Z", "2026-12-01T10:00:00+24:00"]) assert.isFalse(isRfc3339Instant(text), text)
  })
})
