import { execFile } from "node:child_process"
import { mkdtemp, readFile, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Effect, Schema, type Scope } from "effect"
import { freePort as childFreePort } from "./ChildProcess.ts"

/** The throwaway broker could not be started, stopped or killed. */
export class ThrowawayKafkaError extends Schema.TaggedError<ThrowawayKafkaError>()("ThrowawayKafkaError", {
  operation: Schema.String,
  message: Schema.String
}) {}

/** A broker of one test's own: its own ports, its own data, killed when the scope closes. */
export interface ThrowawayKafka {
  /** `127.0.0.1:<port>`, the KAFKA_BROKERS value for clients of this broker. */
  readonly brokers: string
  readonly port: number
  readonly stateDir: string
  /** The JVM's pid; a new one after `restart`. */
  readonly pid: number
  /** Graceful stop (SIGTERM, bounded wait, then SIGKILL), through kafka.sh. */
  readonly stop: Effect.Effect<void, ThrowawayKafkaError>
  /** SIGKILL to this broker's pid (and nothing else); returns once the process is gone. */
  readonly kill: Effect.Effect<void, ThrowawayKafkaError>
  /** Starts it again on the same ports with the same data (after `stop` or `kill`). */
  readonly restart: Effect.Effect<void, ThrowawayKafkaError>
}

export interface ThrowawayKafkaOptions {
  /** Bound on each start (JVM start plus readiness). */
  readonly startTimeout_ms: number
  /** The state folder's name prefix under the temp dir (default `pay-kafka-`): a test finds its own broker's by it. */
  readonly stateDirPrefix?: string
}

const kafkaScript = fileURLToPath(new URL("../../../scripts/kafka/kafka.sh", import.meta.url))
const killWait_ms = 10_000

export const fail = (operation: string, message: string) => new ThrowawayKafkaError({ operation, message })

/** A port nobody listens on right now (`ChildProcess.freePort`, failing with this module's error; bench/ imports it from here). */
export const freePort: Effect.Effect<number, ThrowawayKafkaError> = childFreePort.pipe(Effect.mapError((error) => fail("freePort", error.message)))

export const runScript = (command: "start" | "stop", env: Record<string, string>, timeout_ms: number) =>
  Effect.callback<string, ThrowawayKafkaError>((resume) => {
    const child = execFile(
      "bash",
      [kafkaScript, command],
      { env: { ...process.env, ...env }, timeout: timeout_ms, killSignal: "SIGKILL", maxBuffer: 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error === null) resume(Effect.succeed(stdout.trim()))
        else resume(Effect.fail(fail(command, `kafka.sh ${command} failed (${error.message.split("\n")[0]}): ${stderr.trim().slice(-2_000)}`)))
      }
    )
    return Effect.sync(() => child.kill("SIGKILL"))
  })

/** True while `pid` runs and is not a zombie (a killed JVM stays a zombie until reaped). */
export const isAlive = (pid: number) =>
  Effect.promise(() =>
    readFile(`/proc/${pid}/stat`, "utf8").then(
      (stat) => !/^\d+ \(.*\) Z/.test(stat),
      () => false
    )
  )

/** The pid kafka.sh wrote when it launched the broker, or 0 when it wrote none (it never launched it). */
export const pidFileOrNone = (stateDir: string) => readPid(stateDir).pipe(Effect.catch(() => Effect.succeed(0)))

/** Only a JVM running kafka.Kafka with this broker's own config is ours to signal. */
export const isOurBroker = (pid: number, stateDir: string) =>
  Effect.promise(() =>
    readFile(`/proc/${pid}/cmdline`, "utf8").then(
      (cmdline) => cmdline.split("\u0000").join(" ").includes(`kafka.Kafka ${join(stateDir, "conf", "server.properties")}`),
      () => false
    )
  )

export const readPid = (stateDir: string) =>
  Effect.tryPromise({
    try: () => readFile(join(stateDir, "kafka.pid"), "utf8"),
    catch: (error) => fail("pid", `no pid file in ${stateDir}: ${String(error)}`)
  }).pipe(
    Effect.flatMap((text) => {
      const pid = Number.parseInt(text.trim(), 10)
      return Number.isInteger(pid) && pid > 1 ? Effect.succeed(pid) : Effect.fail(fail("pid", `bad pid file content ${JSON.stringify(text)}`))
    })
  )

/**
 * Starts a fresh single-node broker with `scripts/kafka/kafka.sh start` (own free ports, own temp
 * state dir, formatted fresh) and SIGKILLs it, by pid, when the scope closes. The main broker on
 * 9092 is never touched: every signal goes to a pid whose command line names this state dir.
 */
export const startThrowawayKafka = (
  options: ThrowawayKafkaOptions = { startTimeout_ms: 90_000 }
): Effect.Effect<ThrowawayKafka, ThrowawayKafkaError, Scope.Scope> =>
  Effect.gen(function* () {
    const port = yield* freePort
    let controllerPort = yield* freePort
    while (controllerPort === port) controllerPort = yield* freePort
    const stateDir = yield* Effect.tryPromise({
      try: () => mkdtemp(join(tmpdir(), options.stateDirPrefix ?? "pay-kafka-")),
      catch: (error) => fail("mkdtemp", String(error))
    })
    const env = {
      KAFKA_PORT: String(port),
      KAFKA_CONTROLLER_PORT: String(controllerPort),
      KAFKA_STATE: stateDir,
      KAFKA_START_TIMEOUT_S: String(Math.ceil(options.startTimeout_ms / 1_000)),
      // After a SIGKILL the restarted node cannot register until the controller has fenced its
      // previous incarnation, i.e. after broker.session.timeout.ms (9 s by default). Controller and
      // broker share one JVM here, so a short session costs nothing and makes restart() quick.
      KAFKA_EXTRA_PROPERTIES: "broker.session.timeout.ms=2500\nbroker.heartbeat.interval.ms=500"
    }
    // The script bounds its own wait; this outer bound also covers a first-time jar download.
    const start = (fresh: boolean) =>
      runScript("start", { ...env, KAFKA_FRESH: fresh ? "1" : "0" }, options.startTimeout_ms + 60_000).pipe(
        Effect.andThen(readPid(stateDir))
      )

    let pid = 0
    const kill = Effect.gen(function* () {
      // Interrupted while kafka.sh was starting it (Ctrl-C, a timeout): the JVM runs in a session
      // of its own, the signal never reached it, and its pid is only in the pid file.
      if (pid === 0) pid = yield* pidFileOrNone(stateDir)
      if (pid === 0 || !(yield* isAlive(pid))) return
      if (!(yield* isOurBroker(pid, stateDir))) return yield* Effect.fail(fail("kill", `pid ${pid} is not this throwaway broker`))
      yield* Effect.try({ try: () => process.kill(pid, "SIGKILL"), catch: (error) => fail("kill", String(error)) })
      const deadline = Date.now() + killWait_ms
      while (yield* isAlive(pid)) {
        if (Date.now() > deadline) return yield* Effect.fail(fail("kill", `pid ${pid} still alive ${killWait_ms} ms after SIGKILL`))
        yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 20)))
      }
    })

    // The clean-up first, then the start: an interrupt during the start (the broker launched, not
    // yet ready) kills it and deletes its folder all the same.
    yield* Effect.addFinalizer(() =>
      kill.pipe(
        Effect.andThen(Effect.promise(() => rm(stateDir, { recursive: true, force: true }))),
        Effect.catch((error) => Effect.logError(`throwaway kafka cleanup: ${error.message}`))
      )
    )
    pid = yield* start(true)

    const broker: ThrowawayKafka = {
      brokers: `127.0.0.1:${port}`,
      port,
      stateDir,
      get pid() {
        return pid
      },
      stop: runScript("stop", env, 60_000).pipe(Effect.asVoid),
      kill,
      restart: Effect.gen(function* () {
        pid = yield* start(false)
      })
    }
    return broker
  })
