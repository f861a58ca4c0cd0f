import { Effect, Schema } from "effect"
import { execFile } from "node:child_process"

export class PromtoolFailed extends Schema.TaggedError<PromtoolFailed>()("PromtoolFailed", { message: Schema.String }) {}

/** `promtool <args>` (Debian's prometheus package), `input` on stdin; its combined output. */
export const promtool = (args: ReadonlyArray<string>, input?: string) =>
  Effect.callback<{ readonly code: number; readonly output: string }, PromtoolFailed>((resume) => {
    const child = execFile("promtool", [...args], { timeout: 60_000, killSignal: "SIGKILL", maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error !== null && typeof error.code !== "number") {
        resume(Effect.fail(new PromtoolFailed({ message: `promtool ${args.join(" ")}: ${error.message}` })))
        return
      }
      resume(Effect.succeed({ code: error === null ? 0 : Number(error.code), output: `${stdout}${stderr}` }))
    })
    if (input !== undefined) child.stdin?.end(input)
    return Effect.sync(() => child.kill("SIGKILL"))
  })

export interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

/**
 * The samples of a text exposition (after `promtool check metrics` accepted its syntax): enough of
 * the format to read values back — `name{label="value",…} number`.
 */
export const samples = (text: string): ReadonlyArray<Sample> =>
  text.split("\n").flatMap((line) => {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (match === null) return []
    const labels: Record<string, string> = {}
    for (const pair of (match[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[String(pair[1])] = String(pair[2])
    return [{ name: String(match[1]), labels, value: Number(match[3]) }]
  })

/** The value of the one sample named `name` whose labels include `labels`; undefined when none. */
export const valueOf = (all: ReadonlyArray<Sample>, name: string, labels: Readonly<Record<string, string>> = {}) =>
  all.find((sample) => sample.name === name && Object.entries(labels).every(([key, value]) => sample.labels[key] === value))?.value
