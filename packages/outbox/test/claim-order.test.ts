// The per-aggregate claim guard (claimableInOrder, packages/outbox/src/OutboxStore.ts) as a
// property: whatever the window of candidates the claim query returned, and in whatever order, the
// batch holds, for each aggregate, exactly the longest prefix of its unpublished rows that the
// window contains, and nothing after a row held elsewhere; the batch is in position order.
import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import { claimableInOrder } from "../src/OutboxStore.ts"

interface Candidate {
  readonly position: bigint
  readonly aggregate_type: string
  readonly aggregate_id: string
  readonly earlier_unpublished: number
}

/** Unpublished rows of a few aggregates, interleaved; each row in this claim's window or not (held by another publisher, or past the limit). */
const backlog = fc.array(fc.record({ aggregate: fc.constantFrom("pay_a", "pay_b", "pay_c", "pay_d"), inWindow: fc.boolean() }), { maxLength: 40 })

describe("claimableInOrder (per-aggregate claim guard)", () => {
  it("property: each aggregate's longest in-window prefix, nothing after a gap, in position order, whatever order the candidates come in", () => {
    fc.assert(
      fc.property(backlog, fc.integer({ min: 0, max: 1_000 }), (rows, seed) => {
        const seen = new Map<string, number>()
        const all = rows.map((row, index) => {
          const earlier_unpublished = seen.get(row.aggregate) ?? 0
          seen.set(row.aggregate, earlier_unpublished + 1)
          const candidate: Candidate = { position: BigInt(10 + index * 3), aggregate_type: "payment", aggregate_id: row.aggregate, earlier_unpublished }
          return { candidate, inWindow: row.inWindow }
        })
        // Expected: walk each aggregate's rows in order; claim while they are in the window.
        const blocked = new Set<string>()
        const expected = all.flatMap(({ candidate, inWindow }) => {
          if (!inWindow) blocked.add(candidate.aggregate_id)
          return inWindow && !blocked.has(candidate.aggregate_id) ? [candidate] : []
        })
        const window = all.filter((row) => row.inWindow).map((row) => row.candidate)
        const shuffled = [...window].sort((a, b) => ((Number(a.position) * 7919 + seed) % 101) - ((Number(b.position) * 7919 + seed) % 101))
        assert.deepStrictEqual(claimableInOrder(shuffled), expected)
      }),
      { numRuns: 500 }
    )
  })
})
