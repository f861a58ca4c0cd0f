// The alerting rules are checked and unit-tested by Prometheus' own promtool (Debian's prometheus
// package; scripts/setup.sh installs it): syntax, then what pages and what does not on synthetic
// series (ops/prometheus/alerts.test.yml). That the series they read exist is checked against a
// real scrape in observability.test.ts.
import { assert, it } from "@effect/vitest"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { promtool } from "./support/Prometheus.ts"
import { alertRulesPath, alertRulesTestPath, dashboardExpressions, repositoryRoot, ruleExpressions } from "./support/PromQl.ts"

it.effect("promtool check rules: the rules file is valid", () =>
  Effect.gen(function* () {
    const checked = yield* promtool(["check", "rules", alertRulesPath])
    assert.strictEqual(checked.code, 0, checked.output)
    assert.match(checked.output, /SUCCESS: \d+ rules found/)
  }))

it.effect("promtool test rules: each page and ticket fires when it should and stays quiet when it should", () =>
  Effect.gen(function* () {
    const tested = yield* promtool(["test", "rules", alertRulesTestPath])
    assert.strictEqual(tested.code, 0, tested.output)
    assert.match(tested.output, /SUCCESS/)
  }))

it("every alert has a severity, a runbook link into docs/oncall.md, a row in its table and a section there, and a link from docs/runbook.md", () => {
  const rules = readFileSync(alertRulesPath, "utf8")
  const oncall = readFileSync(`${repositoryRoot}docs/oncall.md`, "utf8")
  const runbook = readFileSync(`${repositoryRoot}docs/runbook.md`, "utf8")
  const alerts = [...rules.matchAll(/- alert: (\S+)/g)].map((m) => String(m[1]))
  assert.isAtLeast(alerts.length, 8)
  for (const alert of alerts) {
    assert.include(rules, `runbook: docs/oncall.md#${alert.toLowerCase()}`, alert)
    assert.match(oncall, new RegExp(`^### ${alert}$`, "m"), `docs/oncall.md has a section for ${alert}`)
    // The table on-call reads first (outside operator review: DatabaseClockSkew had a section, no row).
    assert.match(oncall, new RegExp(`^\\| \\[${alert}\\]\\(#${alert.toLowerCase()}\\) \\| (page|ticket) \\|`, "m"), `docs/oncall.md's table has a row for ${alert}`)
    assert.include(runbook, `(oncall.md#${alert.toLowerCase()})`, `docs/runbook.md links ${alert}`)
  }
  assert.strictEqual([...rules.matchAll(/severity: (page|ticket)/g)].length, alerts.length)
})

it("the dashboard and rules parse into metric names (the names are checked against a scrape elsewhere)", () => {
  const { exprs, recorded } = ruleExpressions()
  assert.isAtLeast(exprs.length, 10)
  assert.deepStrictEqual(recorded.length, 4)
  assert.isAtLeast(dashboardExpressions().length, 12)
})
