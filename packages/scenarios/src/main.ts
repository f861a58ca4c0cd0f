/**
 * `pnpm scenario --list` | `pnpm scenario <name> [<name> …]` | `pnpm scenario --all`: runs failure
 * scenarios against the real local stack (docs/failure-scenarios.md). Exit code 0 when every
 * verdict is PASS, 1 otherwise, 2 for a usage error.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import { stopWhenOrphaned } from "./Orphan.ts"
import { findScenario, scenarios } from "./Registry.ts"
import { runScenario } from "./Runner.ts"
import type { Scenario } from "./Scenario.ts"

const usage = () => {
  console.log("usage: pnpm scenario --list | --all | <name> [<name> …]\n")
  for (const scenario of scenarios) console.log(`  ${scenario.name.padEnd(32)} ${scenario.fast ? "" : "(slow) "}${scenario.summary}`)
}

const selected = (args: ReadonlyArray<string>): ReadonlyArray<Scenario> | undefined => {
  if (args.includes("--all")) return scenarios
  const found = args.map((name) => findScenario(name))
  return found.every((scenario) => scenario !== undefined) ? found.filter((s) => s !== undefined) : undefined
}

const main = Effect.gen(function* () {
  const args = process.argv.slice(2)
  if (args.length === 0 || args.includes("--list") || args.includes("--help")) {
    usage()
    return args.length === 0 ? 2 : 0
  }
  const chosen = selected(args)
  if (chosen === undefined) {
    console.log(`unknown scenario in ${args.join(" ")}\n`)
    usage()
    return 2
  }
  const verdicts = []
  for (const scenario of chosen) verdicts.push(yield* runScenario(scenario, (line) => console.log(line)))
  if (verdicts.length > 1) for (const verdict of verdicts) console.log(verdict.line)
  return verdicts.every((verdict) => verdict.passed) ? 0 : 1
})

Effect.andThen(stopWhenOrphaned, main).pipe(
  Effect.flatMap((code) => Effect.sync(() => {
    process.exitCode = code
  })),
  NodeRuntime.runMain
)
