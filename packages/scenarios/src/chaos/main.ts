/**
 * `pnpm chaos --seed S --duration D --clients C`: concurrent clients against two API instances while
 * a seeded schedule kills, pauses and cuts; then a checker over the history, Postgres and Kafka
 * (docs/failure-scenarios.md, "The chaos run"). Exit 0 when every check holds, 1 otherwise, 2 for
 * a usage error.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import { stopWhenOrphaned } from "../Orphan.ts"
import { runChaos } from "./Run.ts"

const bounds = { seed: [0, 2 ** 31 - 1], duration: [10, 14_400], clients: [1, 128], drain: [30, 1_800], abandon: [0, 90], "fault-gap": [3, 600], payments: [0, 10_000_000] } as const

const argument = (name: keyof typeof bounds, fallback: number): number | undefined => {
  const index = process.argv.indexOf(`--${name}`)
  const raw = index === -1 ? undefined : process.argv[index + 1]
  const value = raw === undefined ? fallback : Number(raw)
  const [min, max] = bounds[name]
  return Number.isInteger(value) && value >= min && value <= max ? value : undefined
}

/** The arguments that are not `--<option> <value>` of `bounds`, nor `--machine-kafka`: a misspelt option would be ignored and a full default run started. */
const unknownArguments = (args: ReadonlyArray<string>): ReadonlyArray<string> => {
  const unknown: Array<string> = []
  for (let index = 0; index < args.length; index++) {
    const arg = args[index] ?? ""
    if (arg === "--machine-kafka") continue
    if (arg.startsWith("--") && arg.slice(2) in bounds) {
      const value = args[index + 1]
      if (value === undefined || value.startsWith("--")) unknown.push(`${arg} (no value)`)
      else index++
      continue
    }
    unknown.push(arg)
  }
  return unknown
}

const usage = `usage: pnpm chaos [--seed 0..${bounds.seed[1]}] [--duration ${bounds.duration.join("..")} s] [--clients ${bounds.clients.join("..")}] [--drain ${bounds.drain.join("..")} s] [--abandon ${bounds.abandon.join("..")} %] [--fault-gap ${bounds["fault-gap"].join("..")} s] [--payments 0..${bounds.payments[1]}] [--machine-kafka]`

const main = Effect.gen(function* () {
  const args = process.argv.slice(2)
  if (args.some((arg) => arg === "--help" || arg === "-h")) {
    console.log(usage)
    return 0
  }
  const unknown = unknownArguments(args)
  if (unknown.length > 0) {
    console.error(`unknown argument(s): ${unknown.join(" ")}\n${usage}`)
    return 2
  }
  const seed = argument("seed", 1)
  const duration_s = argument("duration", 60)
  const clients = argument("clients", 8)
  const drain_s = argument("drain", 180)
  // --abandon P: P % of created payments are abandoned by their client (checkout never completed).
  const abandon = argument("abandon", 0)
  // --fault-gap S: at least S s between one fault's healing and the next (default 3).
  const faultGap = argument("fault-gap", 3)
  // --payments N: stop the load once N payments were created (0: no target; the duration bounds it).
  const paymentsTarget = argument("payments", 0)
  if (paymentsTarget === undefined || faultGap === undefined || seed === undefined || duration_s === undefined || clients === undefined || drain_s === undefined || abandon === undefined) {
    console.error(usage)
    return 2
  }
  // --machine-kafka: the machine's broker instead of a 3-node cluster of the run's own (no broker faults).
  const kafka = process.argv.includes("--machine-kafka") ? "machine" : "cluster"
  const report = yield* runChaos({ seed, duration_s, clients, drain_s, kafka, abandon_share: abandon / 100, fault_gap_s: faultGap, ...(paymentsTarget > 0 ? { payments_target: paymentsTarget } : {}) }, (line) => console.log(line))
  console.log(`\npayments ${report.payments} (${report.payments_per_s}/s, ${(report.abandon_share * 100).toFixed(0)} % never authorized, measured; --abandon ${abandon} %), operations ${report.operations} (duplicated/retried/concurrent under one key: ${(report.duplicated_share * 100).toFixed(0)} %)`)
  console.log(`attempts by outcome ${JSON.stringify(report.attempts_by_outcome)}`)
  console.log(`decided ${JSON.stringify(report.decided_by_status)}`)
  console.log(`faults applied ${JSON.stringify(report.faults_applied)} of ${report.faults_scheduled} scheduled`)
  for (const check of report.checks) {
    console.log(`${check.violations.length === 0 ? "ok  " : "FAIL"} ${check.name} (${check.checked} checked${check.violations.length === 0 ? "" : `, ${check.violations.length} violations`})`)
    for (const violation of check.violations.slice(0, 5)) console.log(`       ${violation}`)
  }
  console.log(report.passed ? "VERDICT: PASS chaos" : "VERDICT: FAIL chaos")
  return report.passed ? 0 : 1
})

Effect.andThen(stopWhenOrphaned, main).pipe(Effect.flatMap((code) => Effect.sync(() => {
  process.exitCode = code
})), NodeRuntime.runMain)
