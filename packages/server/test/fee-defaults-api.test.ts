// Issue 11: the platform's default fixed fee (30) was 30 minor units in every currency: 30 đồng, ¥30,
// 30 fils. Settled through the API with no merchant schedule, each currency now pays the default
// scaled to its exponent (VND and JPY: no fixed part; KWD: 0.300), computed here from the rule's
// second writing (settlement test-support), and the books and /v1/balance agree.
import { assert, layer } from "@effect/vitest"
import { minorUnitExponent } from "@pay/domain"
import {
  assertBooksConsistent,
  assertSettledOnce,
  defaultTermsIn,
  type ExpectedSettlement,
  expectedPayable
} from "@pay/settlement/test-support"
import { Effect } from "effect"
import { authorizedPayment, describeAnswer, newKey, payableBalance, settle } from "./support/Api.ts"
import { inProcessAppLayer } from "./support/InProcessApp.ts"
import { createMerchant } from "./support/TestServer.ts"

layer(inProcessAppLayer(), { excludeTestServices: true, timeout: "60 seconds" })("default fees per currency through the API", (it) => {
  it.effect("VND 250 000, JPY 1 234, KWD 12.345, USD 10.50 with no merchant schedule: fixed part 0, 0, 300, 30; one posting each; the balance is Σ net", () =>
    Effect.gen(function* () {
      const m = yield* createMerchant("Default fees")
      const cases = [
        { gross_minor: 250_000n, currency: "VND" as const },
        { gross_minor: 1_234n, currency: "JPY" as const },
        { gross_minor: 12_345n, currency: "KWD" as const },
        { gross_minor: 1_050n, currency: "USD" as const }
      ]
      const settled: Array<ExpectedSettlement> = []
      for (const c of cases) {
        const id = yield* authorizedPayment(m, c.gross_minor, c.currency)
        const answer = yield* settle(m, id, newKey("settle"))
        assert.strictEqual(answer.status, 200, describeAnswer(answer))
        settled.push({ paymentId: id, ...c, terms: defaultTermsIn(minorUnitExponent(c.currency)) })
      }
      assert.deepStrictEqual(settled.map((s) => s.terms.fee_fixed_minor), [0n, 0n, 300n, 30n])
      for (const expected of settled) yield* assertSettledOnce(expected)
      yield* assertBooksConsistent
      const balance = yield* payableBalance(m)
      assert.deepStrictEqual(balance, expectedPayable(settled))
      // By hand: ₫250 000 × 2.9 % = 7 250, net 242 750; ¥1 234 × 2.9 % = 35.786 → 36, net 1 198;
      // 12.345 KWD × 2.9 % = 358.005 → 358 + 300 = 658 fils, net 11.687; 10.50 USD: 0.60, net 9.90.
      assert.deepStrictEqual(balance, [
        { currency: "JPY", amount: 1_198 },
        { currency: "KWD", amount: 11_687 },
        { currency: "USD", amount: 990 },
        { currency: "VND", amount: 242_750 }
      ])
    }))
})
