import { Effect, Schema } from "effect"
import { execFile } from "node:child_process"
import { readFileSync, rmSync } from "node:fs"
import { fileURLToPath } from "node:url"

const stackScript = fileURLToPath(new URL("../../../scripts/stack.sh", import.meta.url))

export class ThrowawayError extends Schema.TaggedError<ThrowawayError>()("ThrowawayError", {
  message: Schema.String
}) {}

/** A private Postgres or Redis on a free loopback port, for tests that kill a dependency. */
export interface ThrowawayInstance {
  readonly kind: "postgres" | "redis"
  readonly url: string
  readonly port: number
  readonly dir: string
  /** The server's pid right now (changes after `restart`). */
  readonly pid: () => number
  /** SIGKILL by pid: a crash, not a shutdown. Only this instance's pid is ever signalled. */
  readonly kill: Effect.Effect<void>
  /** SIGSTOP / SIGCONT: a server that hangs without closing its connections. */
  readonly pause: Effect.Effect<void>
  readonly resume: Effect.Effect<void>
  /** Start again on the same folder and port. */
  readonly restart: Effect.Effect<void, ThrowawayError>
}

const runStack = (args: ReadonlyArray<string>, timeout_ms: number) =>
  Effect.callback<string, ThrowawayError>((resume) => {
    const child = execFile("bash", [stackScript, ...args], { timeout: timeout_ms }, (error, stdout, stderr) => {
      if (error) resume(Effect.fail(new ThrowawayError({ message: `stack.sh ${args.join(" ")}: ${error.message}\n${stderr}` })))
      else resume(Effect.succeed(stdout.trim()))
    })
    return Effect.sync(() => child.kill("SIGKILL"))
  })

/**
 * Whether `pid` still is the server this instance started: alive, and its command line names the
 * instance (redis-server titles itself `redis-server 127.0.0.1:<port>`; the postmaster runs with
 * `-D <dir>/data`). A pid can be reused once the server died (e.g. after `kill`, the scope's
 * release signals again): never signal a number without asking this first.
 */
export const isInstance = (pid: number, identity: string): boolean => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").includes(identity)
  } catch {
    return false
  }
}

const signal = (pid: number, name: NodeJS.Signals, identity: string) =>
  Effect.sync(() => {
    if (!isInstance(pid, identity)) return
    try {
      process.kill(pid, name)
    } catch (cause) {
      // ESRCH: already gone, which is what a kill wants anyway.
      if (!(cause instanceof Error && "code" in cause && cause.code === "ESRCH")) throw cause
    }
  })

const waitForExit = (pid: number) =>
  Effect.gen(function* () {
    for (let i = 0; i < 200; i++) {
      const alive = yield* Effect.sync(() => {
        try {
          process.kill(pid, 0)
          return true
        } catch {
          return false
        }
      })
      if (!alive) return
      yield* Effect.sleep(25)
    }
  })

/**
 * Starts a throwaway instance (scoped): killed by pid and its folder removed when the scope
 * closes, whatever the test did to it.
 */
export const throwaway = (kind: "postgres" | "redis") =>
  Effect.acquireRelease(
    Effect.gen(function* () {
      const line = yield* runStack(["throwaway", kind], 60_000)
      const [url, pidText, dir] = line.split(/\s+/)
      if (url === undefined || pidText === undefined || dir === undefined) {
        return yield* new ThrowawayError({ message: `unexpected output from stack.sh: ${line}` })
      }
      const port = Number(new URL(url).port)
      let pid = Number(pidText)
      const identity = kind === "redis" ? `:${port}` : `${dir}/data`
      const instance: ThrowawayInstance = {
        kind,
        url,
        port,
        dir,
        pid: () => pid,
        kill: Effect.suspend(() => signal(pid, "SIGKILL", identity).pipe(Effect.andThen(waitForExit(pid)))),
        pause: Effect.suspend(() => signal(pid, "SIGSTOP", identity)),
        resume: Effect.suspend(() => signal(pid, "SIGCONT", identity)),
        restart: Effect.gen(function* () {
          yield* waitForExit(pid)
          if (kind === "postgres") yield* Effect.sync(() => rmSync(`${dir}/data/postmaster.pid`, { force: true }))
          const out = yield* runStack(["revive", kind, dir, String(port)], 60_000)
          pid = Number(out.split(/\s+/).pop())
        })
      }
      return instance
    }),
    (instance) =>
      Effect.gen(function* () {
        const identity = instance.kind === "redis" ? `:${instance.port}` : `${instance.dir}/data`
        yield* signal(instance.pid(), "SIGCONT", identity)
        yield* signal(instance.pid(), "SIGKILL", identity)
        yield* waitForExit(instance.pid())
        yield* Effect.sync(() => rmSync(instance.dir, { recursive: true, force: true }))
      }).pipe(Effect.orDie)
  )
