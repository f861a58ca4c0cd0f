// Issue 11, "Scripts": `stack.sh down` killed whatever pid its pid file named, and `KAFKA_FRESH=1`
// wiped `$KAFKA_STATE/data` whatever it held. Both are attacked here without touching the
// machine's services: stack.sh runs from a copy in a temp folder (its own .stack/, every URL on
// port 1), and kafka.sh runs with a state folder of the test's and a fake `java` (no broker starts,
// whatever the script does).
import { assert, describe, it } from "@effect/vitest"
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Effect } from "effect"
import { freePort } from "../src/ChildProcess.ts"

const repositoryRoot = fileURLToPath(new URL("../../../", import.meta.url))

interface ScriptRun {
  readonly exitCode: number
  readonly stdout: string
  readonly stderr: string
}

const runScript = (script: string, args: ReadonlyArray<string>, env: Readonly<Record<string, string>>) =>
  Effect.callback<ScriptRun>((resume) => {
    const child = execFile("bash", [script, ...args], { env: { ...process.env, ...env }, timeout: 60_000, killSignal: "SIGKILL" }, (error, stdout, stderr) =>
      resume(Effect.succeed({ exitCode: error === null ? 0 : typeof error.code === "number" ? error.code : -1, stdout, stderr })))
    return Effect.sync(() => {
      if (child.exitCode === null) child.kill("SIGKILL")
    })
  })

const alive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** A temp folder removed when the scope closes. */
const tempDir = (label: string) =>
  Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(join(tmpdir(), `pay-${label}-`))),
    (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
  )

/** A process that is not redis: `sleep`, killed (by its own handle) when the scope closes. */
const bystander = Effect.acquireRelease(
  Effect.sync(() => spawn("sleep", ["60"], { stdio: "ignore" })),
  (child: ChildProcess) => Effect.sync(() => child.kill("SIGKILL"))
)

describe("script guards (issue 11)", () => {
  it.live("stack.sh down never signals a pid that is not the redis-server it started (a stale pid file naming another process)", () =>
    Effect.scoped(Effect.gen(function* () {
      const root = yield* tempDir("stack")
      mkdirSync(join(root, "scripts"))
      copyFileSync(join(repositoryRoot, "scripts/stack.sh"), join(root, "scripts/stack.sh"))
      const other = yield* bystander
      const pid = other.pid ?? assert.fail("no pid")
      mkdirSync(join(root, ".stack/redis"), { recursive: true })
      writeFileSync(join(root, ".stack/started"), "redis\n")
      writeFileSync(join(root, ".stack/redis/redis.pid"), `${pid}\n`)

      const down = yield* runScript(join(root, "scripts/stack.sh"), ["down"], {
        DATABASE_URL: "postgres://postgres@127.0.0.1:1/none",
        REDIS_URL: "redis://127.0.0.1:1/0",
        KAFKA_BROKERS: "127.0.0.1:1"
      })
      assert.strictEqual(down.exitCode, 0, down.stderr)
      yield* Effect.sleep(200)
      assert.isTrue(alive(pid), `the bystander ${pid} was signalled: ${down.stderr}`)
      assert.include(down.stderr, "not our redis-server")
    })))

  it.live("KAFKA_FRESH=1 refuses to wipe a data folder kafka.sh did not format (no meta.properties); the folder is intact", () =>
    Effect.scoped(Effect.gen(function* () {
      const state = yield* tempDir("kafka-state")
      mkdirSync(join(state, "data"))
      const precious = join(state, "data", "precious.txt")
      writeFileSync(precious, "not Kafka's")
      // A `java` that reports 17 and fails anything else: whatever the script does, no broker runs.
      const javaHome = yield* tempDir("fake-java")
      mkdirSync(join(javaHome, "bin"))
      writeFileSync(join(javaHome, "bin/java"), `#!/usr/bin/env bash\nif [[ "$1" == -version ]]; then echo 'openjdk version "17.0.9"' >&2; exit 0; fi\nexit 1\n`)
      chmodSync(join(javaHome, "bin/java"), 0o755)

      const started = yield* runScript(join(repositoryRoot, "scripts/kafka/kafka.sh"), ["start"], {
        KAFKA_STATE: state,
        KAFKA_FRESH: "1",
        KAFKA_PORT: String(yield* freePort),
        KAFKA_CONTROLLER_PORT: String(yield* freePort),
        JAVA_HOME: javaHome
      })
      assert.notStrictEqual(started.exitCode, 0)
      assert.isTrue(existsSync(precious), `the folder was wiped: ${started.stderr}`)
      assert.include(started.stderr, "refusing to delete")
    })))
})
