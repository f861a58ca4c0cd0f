import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, type Scope } from "effect"
import { fail, freePort, isAlive, isOurBroker, pidFileOrNone, readPid, runScript, type ThrowawayKafkaError } from "./ThrowawayKafka.ts"

/**
 * One node of a throwaway cluster: a JVM that is KRaft controller and broker at once (combined
 * mode), with its own ports and data dir. Every signal goes to a pid whose command line names
 * this node's own config, never to any other JVM (the main broker on 9092 included).
 */
export interface ClusterNode {
  readonly nodeId: number
  readonly port: number
  readonly stateDir: string
  readonly pid: () => number
  readonly running: Effect.Effect<boolean>
  /** SIGKILL (a crash: no controlled shutdown, no leadership hand-over); returns once it is gone. */
  readonly kill: Effect.Effect<void, ThrowawayKafkaError>
  /** SIGSTOP: the JVM stays, its sockets stay open, it answers nothing (a long GC pause, a hung host). */
  readonly pause: Effect.Effect<void, ThrowawayKafkaError>
  readonly resume: Effect.Effect<void, ThrowawayKafkaError>
  /** Starts it again on the same ports with the same data; ready once it has rejoined. */
  readonly restart: Effect.Effect<void, ThrowawayKafkaError>
}

export interface ThrowawayKafkaCluster {
  /** `127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`: the KAFKA_BROKERS value for clients of this cluster. */
  readonly brokers: string
  readonly nodes: ReadonlyArray<ClusterNode>
  /** What the applications' topics use (KAFKA_REPLICATION_FACTOR, KAFKA_MIN_INSYNC_REPLICAS). */
  readonly replicationFactor: number
  readonly minInsyncReplicas: number
}

export interface ThrowawayKafkaClusterOptions {
  /** Bound on each node's start (JVM start plus readiness: the quorum needs a majority up). */
  readonly startTimeout_ms: number
}

const clusterSize = 3
const replicationFactor = 3
const minInsyncReplicas = 2
const killWait_ms = 10_000

/**
 * Per node, appended last to kafka.sh's server.properties. Internal topics are replicated like the
 * application's (3 copies, 2 in sync) so that one node down loses no committed offset.
 * - broker.session.timeout.ms 2 500: a killed node is fenced (its partitions' leadership moves)
 *   in 2.5 s instead of 9 s; a restarted node can register again as soon as it is fenced.
 * - replica.lag.time.max.ms 5 000: a paused (SIGSTOP) follower leaves the ISR after 5 s instead of
 *   30 s. Until then an acks=all produce waits for it; with min.insync.replicas 2 writes continue
 *   with the two others afterwards. Never below 2 copies: unclean leader election stays off.
 */
const clusterProperties = [
  `offsets.topic.replication.factor=${replicationFactor}`,
  `transaction.state.log.replication.factor=${replicationFactor}`,
  `transaction.state.log.min.isr=${minInsyncReplicas}`,
  `share.coordinator.state.topic.replication.factor=${replicationFactor}`,
  `share.coordinator.state.topic.min.isr=${minInsyncReplicas}`,
  `default.replication.factor=${replicationFactor}`,
  `min.insync.replicas=${minInsyncReplicas}`,
  "unclean.leader.election.enable=false",
  "broker.session.timeout.ms=2500",
  "broker.heartbeat.interval.ms=500",
  "replica.lag.time.max.ms=5000",
  // Internal topics and new topics need all three nodes registered; auto-creation off so that a
  // client racing the cluster's start cannot create a topic with fewer copies.
  "auto.create.topics.enable=false"
].join("\n")

const distinctPorts = (count: number) =>
  Effect.gen(function* () {
    const ports = new Set<number>()
    for (let tries = 0; ports.size < count && tries < count * 10; tries++) ports.add(yield* freePort)
    if (ports.size < count) return yield* Effect.fail(fail("freePort", `could not find ${count} distinct free ports`))
    return [...ports]
  })

const signalNode = (operation: string, stateDir: string, pid: number, signal: NodeJS.Signals) =>
  Effect.gen(function* () {
    if (!(yield* isAlive(pid))) return yield* Effect.fail(fail(operation, `pid ${pid} is not running`))
    if (!(yield* isOurBroker(pid, stateDir))) return yield* Effect.fail(fail(operation, `pid ${pid} is not this cluster's node`))
    yield* Effect.try({ try: () => process.kill(pid, signal), catch: (error) => fail(operation, String(error)) })
  })

interface NodeSpec {
  readonly nodeId: number
  readonly port: number
  readonly controllerPort: number
  readonly stateDir: string
}

const makeNode = (spec: NodeSpec, voters: string, options: ThrowawayKafkaClusterOptions): ClusterNode & { start: (fresh: boolean) => Effect.Effect<void, ThrowawayKafkaError> } => {
  const env = {
    KAFKA_PORT: String(spec.port),
    KAFKA_CONTROLLER_PORT: String(spec.controllerPort),
    KAFKA_STATE: spec.stateDir,
    KAFKA_NODE_ID: String(spec.nodeId),
    KAFKA_QUORUM_VOTERS: voters,
    KAFKA_START_TIMEOUT_S: String(Math.ceil(options.startTimeout_ms / 1_000)),
    KAFKA_EXTRA_PROPERTIES: clusterProperties
  }
  let pid = 0
  const start = (fresh: boolean) =>
    runScript("start", { ...env, KAFKA_FRESH: fresh ? "1" : "0" }, options.startTimeout_ms + 60_000).pipe(
      Effect.andThen(readPid(spec.stateDir)),
      Effect.map((started) => {
        pid = started
      })
    )
  const kill = Effect.gen(function* () {
    // Interrupted while kafka.sh was starting it: the JVM's pid is only in the pid file.
    if (pid === 0) pid = yield* pidFileOrNone(spec.stateDir)
    if (pid === 0 || !(yield* isAlive(pid))) return
    yield* signalNode("kill", spec.stateDir, pid, "SIGCONT")
    yield* signalNode("kill", spec.stateDir, pid, "SIGKILL")
    const deadline = Date.now() + killWait_ms
    while (yield* isAlive(pid)) {
      if (Date.now() > deadline) return yield* Effect.fail(fail("kill", `pid ${pid} still alive ${killWait_ms} ms after SIGKILL`))
      yield* Effect.sleep(20)
    }
  })
  return {
    nodeId: spec.nodeId,
    port: spec.port,
    stateDir: spec.stateDir,
    pid: () => pid,
    running: Effect.suspend(() => (pid === 0 ? Effect.succeed(false) : isAlive(pid))),
    kill,
    pause: Effect.suspend(() => signalNode("pause", spec.stateDir, pid, "SIGSTOP")),
    resume: Effect.suspend(() => signalNode("resume", spec.stateDir, pid, "SIGCONT")),
    restart: Effect.suspend(() => start(false)),
    start
  }
}

/**
 * Starts a fresh 3-node Kafka cluster on loopback through `scripts/kafka/kafka.sh` (same jars in
 * .tools/kafka-libs): each node is controller and broker (a 3-voter static quorum), replication
 * factor 3 and `min.insync.replicas` 2 for every topic by default. The nodes start at once (each
 * waits for the quorum, which needs a majority). SIGKILLed, by pid, and deleted when the scope closes.
 */
export const startThrowawayKafkaCluster = (
  options: ThrowawayKafkaClusterOptions = { startTimeout_ms: 120_000 }
): Effect.Effect<ThrowawayKafkaCluster, ThrowawayKafkaError, Scope.Scope> =>
  Effect.gen(function* () {
    const ports = yield* distinctPorts(clusterSize * 2)
    const specs: Array<NodeSpec> = []
    for (let i = 0; i < clusterSize; i++) {
      const stateDir = yield* Effect.tryPromise({
        try: () => mkdtemp(join(tmpdir(), `pay-kafka-n${i + 1}-`)),
        catch: (error) => fail("mkdtemp", String(error))
      })
      specs.push({ nodeId: i + 1, port: ports[i * 2] ?? 0, controllerPort: ports[i * 2 + 1] ?? 0, stateDir })
    }
    const voters = specs.map((s) => `${s.nodeId}@127.0.0.1:${s.controllerPort}`).join(",")
    const nodes = specs.map((spec) => makeNode(spec, voters, options))
    // The finalizer first: a node that started before another one failed is killed all the same.
    yield* Effect.addFinalizer(() =>
      Effect.forEach(nodes, (node) =>
        node.kill.pipe(
          Effect.andThen(Effect.promise(() => rm(node.stateDir, { recursive: true, force: true }))),
          Effect.catch((error) => Effect.logError(`throwaway kafka cluster cleanup (node ${node.nodeId}): ${error.message}`))
        ), { discard: true }))
    yield* Effect.forEach(nodes, (node) => node.start(true), { concurrency: "unbounded", discard: true })
    const cluster: ThrowawayKafkaCluster = {
      brokers: specs.map((s) => `127.0.0.1:${s.port}`).join(","),
      nodes,
      replicationFactor,
      minInsyncReplicas
    }
    return cluster
  })
