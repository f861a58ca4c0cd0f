import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"

export const repositoryRoot = fileURLToPath(new URL("../../../../", import.meta.url))
export const alertRulesPath = `${repositoryRoot}ops/prometheus/alerts.yml`
export const alertRulesTestPath = `${repositoryRoot}ops/prometheus/alerts.test.yml`
export const dashboardPath = `${repositoryRoot}ops/grafana/payments.json`

const promqlWords = new Set([
  "sum", "max", "min", "avg", "count", "rate", "increase", "irate", "histogram_quantile", "clamp_min", "clamp_max",
  "by", "without", "and", "or", "unless", "on", "ignoring", "group_left", "group_right", "offset", "bool", "abs", "le",
  "humanizePercentage", "humanizeDuration", "time", "vector", "absent", "label_replace"
])

/** The metric names a PromQL expression reads: identifiers outside `{…}`, `[…]`, `by (…)` and strings. */
export const metricNamesIn = (expr: string): ReadonlyArray<string> => {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, " ")
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(by|without|on|ignoring)\s*\([^)]*\)/g, " ")
    // An offset modifier's duration (`offset 15m`): not a metric.
    .replace(/\boffset\s+-?(?:\d+(?:ms|[smhdwy]))+/g, " ")
    .replace(/(?<![a-zA-Z0-9_:])\d+(?:\.\d+)?(?:e[+-]?\d+)?/gi, " ")
  return [...stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)].map((m) => m[0]).filter((word) => !promqlWords.has(word) && !/^\d/.test(word))
}

/** Every `expr:` of the rules file (block or inline) and its recording rules' names. */
export const ruleExpressions = (): { readonly exprs: ReadonlyArray<string>; readonly recorded: ReadonlyArray<string> } => {
  const text = readFileSync(alertRulesPath, "utf8")
  const recorded = [...text.matchAll(/- record: (\S+)/g)].map((m) => String(m[1]))
  const exprs: Array<string> = []
  const lines = text.split("\n")
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? ""
    const match = /^(\s*)expr:\s*(.*)$/.exec(line)
    if (match === null) continue
    if (match[2] !== "|") {
      exprs.push(String(match[2]))
      continue
    }
    const indent = String(match[1]).length
    const block: Array<string> = []
    while (i + 1 < lines.length && ((lines[i + 1] ?? "").trim() === "" || (lines[i + 1] ?? "").search(/\S/) > indent)) block.push(lines[++i] ?? "")
    exprs.push(block.join("\n"))
  }
  return { exprs, recorded }
}

/** Every query of the Grafana dashboard. */
export const dashboardExpressions = (): ReadonlyArray<string> => {
  const dashboard: { panels: Array<{ targets: Array<{ expr: string }> }> } = JSON.parse(readFileSync(dashboardPath, "utf8"))
  return dashboard.panels.flatMap((panel) => panel.targets.map((target) => target.expr.replace(/\$__rate_interval/g, "5m")))
}
