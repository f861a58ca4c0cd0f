import { assert, it } from "@effect/vitest"
import {
  defaultKafkaAdminTimeouts,
  defaultKafkaConsumerOptions,
  defaultKafkaProducerLimits,
  KafkaAdmin,
  KafkaConsumer,
  KafkaProducer
} from "@pay/infra"
import { scaled_ms, shortId, startThrowawayKafka, testRun } from "@pay/testkit"
import { Effect, Fiber, Layer } from "effect"
import { existsSync, readdirSync, readFileSync, readlinkSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

const run = testRun()

/**
 * The pid of the process listening on `port` (Linux: /proc/net/tcp{,6} gives the socket's inode,
 * /proc/<pid>/fd the process holding it). Read from the kernel, not from a pid file: a missing
 * file must not turn "the main broker keeps its pid" into undefined === undefined.
 */
const listeningPid = (port: number): number | undefined => {
  const portHex = port.toString(16).toUpperCase().padStart(4, "0")
  const inodes = new Set<string>()
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const line of readFileSync(table, "utf8").split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/)
      // local_address is HEXIP:HEXPORT; state 0A is LISTEN; field 9 is the inode.
      if (fields[1]?.endsWith(`:${portHex}`) === true && fields[3] === "0A" && fields[9] !== undefined) inodes.add(fields[9])
    }
  }
  for (const pid of readdirSync("/proc").filter((name) => /^\d+$/.test(name))) {
    let fds: ReadonlyArray<string> = []
    try {
      fds = readdirSync(`/proc/${pid}/fd`)
    } catch {
      continue // the process ended, or is not ours to read
    }
    for (const fd of fds) {
      try {
        const target = readlinkSync(`/proc/${pid}/fd/${fd}`)
        if (target.startsWith("socket:[") && inodes.has(target.slice(8, -1))) return Number(pid)
      } catch {
        // the descriptor closed meanwhile
      }
    }
  }
  return undefined
}

const mainBrokerPort = Number(run.kafkaBrokers.split(",")[0]?.split(":").pop())

/** The main broker's pid; the test fails when nothing listens on its port. */
const mainBrokerPid = Effect.sync(() => listeningPid(mainBrokerPort)).pipe(
  Effect.map((pid) => (pid !== undefined && pid > 0 ? pid : assert.fail(`no process listens on the main broker's port ${mainBrokerPort}`)))
)

const clients = (brokers: string, clientId: string) =>
  Layer.mergeAll(
    KafkaAdmin.layerWith({ brokers, clientId: `${clientId}-admin`, ...defaultKafkaAdminTimeouts }),
    KafkaProducer.layerWith({ brokers, clientId: `${clientId}-producer`, ...defaultKafkaProducerLimits }),
    KafkaConsumer.layerWith({ brokers, clientId: `${clientId}-consumer`, ...defaultKafkaConsumerOptions })
  )

const mainBrokerAnswers = KafkaAdmin.use((admin) => admin.ping).pipe(Effect.provide(clients(run.kafkaBrokers, "pay-test-main")))

it.live(
  "a throwaway broker serves, dies by SIGKILL of its own pid (sends then fail fast), restarts with its data; the main broker is untouched",
  () =>
    Effect.gen(function* () {
      const mainPid = yield* mainBrokerPid
      yield* mainBrokerAnswers

      const broker = yield* startThrowawayKafka()
      assert.notStrictEqual(broker.brokers, run.kafkaBrokers)
      assert.notStrictEqual(broker.pid, mainPid)
      const firstPid = broker.pid

      yield* Effect.gen(function* () {
        const admin = yield* KafkaAdmin
        const producer = yield* KafkaProducer
        const consumer = yield* KafkaConsumer
        const topic = `${run.kafkaTopicPrefix}throwaway.${shortId()}`
        yield* admin.createTopic({ topic, partitions: 1 })
        yield* producer.send([{ topic, key: "k1", value: "before the crash", headers: { attempt: "1" } }])
        const before = yield* consumer.readFromBeginning({ topic, count: 1, timeout_ms: 10_000 })
        assert.deepStrictEqual(before.map((record) => [record.key, record.value, record.headers]), [["k1", "before the crash", { attempt: "1" }]])

        const subscription = yield* consumer.subscribe({ groupId: `${run.kafkaTopicPrefix}throwaway.${shortId()}`, topics: [topic] })
        const polled = yield* subscription.poll({ maxRecords: 10, timeout_ms: 10_000 })
        assert.deepStrictEqual(polled.map((record) => record.value), ["before the crash"])

        yield* broker.kill

        // A dead broker refuses connections: the send must fail with KafkaError, quickly, not hang.
        const started_ms = Date.now()
        const error = yield* Effect.flip(producer.send([{ topic, key: "k2", value: "while down", headers: {} }]))
        const elapsed_ms = Date.now() - started_ms
        assert.strictEqual(error._tag, "KafkaError")
        assert.isTrue(error.retriable, `expected a retriable error, got ${error.code}: ${error.message}`)
        assert.isBelow(elapsed_ms, scaled_ms(10_000), `send took ${elapsed_ms} ms to fail`)
        const ping = yield* Effect.flip(admin.ping)
        assert.include(ping.message, broker.brokers)
        // A subscription notices too: its polls fail (after the client's bounded retries), not wait forever.
        const pollFailure = yield* subscription.poll({ maxRecords: 10, timeout_ms: 500 }).pipe(
          Effect.repeat({ while: (records) => records.length === 0, times: 30 }),
          Effect.flip
        )
        assert.strictEqual(pollFailure._tag, "KafkaError")
        assert.isBelow(Date.now() - started_ms, scaled_ms(15_000), "a dead broker is noticed by a subscription within its bounded retries")

        // Restarted on the same ports with the same data: the old message is there, sends work again.
        yield* broker.restart
        assert.notStrictEqual(broker.pid, firstPid)
        yield* producer.send([{ topic, key: "k3", value: "after the restart", headers: {} }])
        const after = yield* consumer.readFromBeginning({ topic, count: 2, timeout_ms: 10_000 })
        assert.deepStrictEqual(after.map((record) => record.value), ["before the crash", "after the restart"])
      }).pipe(Effect.scoped, Effect.provide(clients(broker.brokers, "pay-test-throwaway")))

      // The main broker still runs with the same pid and still answers.
      assert.strictEqual(yield* mainBrokerPid, mainPid)
      yield* mainBrokerAnswers
    }),
  120_000
)

// Ctrl-C (or `timeout`) while the broker was still starting used to leave its JVM running, parent
// 1, with its temp folder: kafka.sh launches it in a session of its own, so the signal never reaches
// it, and the clean-up was registered only once the start had succeeded. Interrupted after kafka.sh
// launched it and before it was ready, it is now killed and its folder deleted.
it.live(
  "interrupted while it starts, the throwaway broker is killed and its folder deleted",
  () =>
    Effect.gen(function* () {
      const prefix = `pay-kafka-interrupted-${shortId()}-`
      const starting = yield* Effect.forkChild(Effect.scoped(startThrowawayKafka({ startTimeout_ms: 90_000, stateDirPrefix: prefix })))
      // Until kafka.sh has launched the JVM (its pid file), bounded.
      let launched: { readonly dir: string; readonly pid: number } | undefined
      for (let attempt = 0; attempt < 300 && launched === undefined; attempt++) {
        yield* Effect.sleep("50 millis")
        const dir = readdirSync(tmpdir()).find((name) => name.startsWith(prefix))
        if (dir === undefined) continue
        const pidText = (() => {
          try {
            return readFileSync(join(tmpdir(), dir, "kafka.pid"), "utf8").trim()
          } catch {
            return ""
          }
        })()
        if (/^\d+$/.test(pidText)) launched = { dir: join(tmpdir(), dir), pid: Number(pidText) }
      }
      if (launched === undefined) return assert.fail("kafka.sh never launched the broker")
      assert.isTrue(existsSync(`/proc/${launched.pid}`), "launched, not yet ready")
      yield* Fiber.interrupt(starting)
      const isZombieOrGone = () => {
        try {
          return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${launched.pid}/stat`, "utf8"))
        } catch {
          return true
        }
      }
      assert.isTrue(isZombieOrGone(), `the broker's JVM (pid ${launched.pid}) is killed`)
      assert.isFalse(existsSync(launched.dir), "its folder is deleted")
    }),
  { timeout: scaled_ms(120_000) }
)

