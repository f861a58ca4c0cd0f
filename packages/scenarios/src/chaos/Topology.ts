import { throwaway } from "@pay/testkit/Throwaway"
import { startThrowawayKafkaCluster } from "@pay/testkit/ThrowawayKafkaCluster"
import { Effect, Schema } from "effect"
import { apiEnvironment, type ApiProcess, type ProcessKind, startApi } from "../ApiProcess.ts"
import type { ScenarioMerchant } from "../Evidence.ts"
import { startPostgresProxy } from "@pay/testkit/FaultProxy"
import { call, field } from "../Http.ts"
import type { ScenarioStack } from "../Stack.ts"
import type { WebhookReceiver } from "./Receiver.ts"

export class TopologyError extends Schema.TaggedError<TopologyError>()("TopologyError", { message: Schema.String }) {}

/**
 * The webhook sender's retries in the chaos run: five attempts within ~7 s (production waits hours
 * between the last ones), so that a delivery either arrives or is exhausted before the checker runs.
 */
const webhookRetrySchedule_ms = "0,300,1000,2000,4000"

/**
 * Each process's start (and restart) bound. A loaded shared machine took 45 s to bring an API
 * back (migrations check, Redis, Kafka, JIT) during the first long run, which the scenarios'
 * 45 s default turned into failed restarts.
 */
const processStartTimeout_ms = 120_000

/**
 * `cluster`: a 3-node Kafka cluster of the run's own (the chaos run's default; broker faults).
 * `machine`: the machine's broker with the run's topic prefix, replication 1 and no broker faults
 * (the suite's short form: no three JVMs to start on a shared machine).
 */
export type KafkaMode = "cluster" | "machine"

/**
 * The chaos topology on loopback: a 3-node Kafka cluster (RF 3, min.insync 2) of its own, a
 * throwaway Redis, Postgres behind the fault proxy, and as separate processes two API instances,
 * two outbox publishers, two consumer instances (settlement + webhooks consumers, one group each)
 * and the webhook sender. Only these processes are ever signalled, by their pids.
 */
export const startTopology = (base: ScenarioStack, kafkaMode: KafkaMode) =>
  Effect.gen(function* () {
    const kafka = kafkaMode === "cluster" ? yield* startThrowawayKafkaCluster() : undefined
    // The scenario's database and prefixes, and its own cluster when it has one (every process and the checker use it).
    const stack: ScenarioStack = kafka === undefined ? base : { ...base, kafkaBrokers: kafka.brokers }
    const redis = yield* throwaway("redis")
    const { proxy: postgresProxy, url: viaProxy } = yield* startPostgresProxy(stack.appUrl)
    const common = apiEnvironment(stack, {
      DATABASE_URL: viaProxy,
      KAFKA_REPLICATION_FACTOR: String(kafka?.replicationFactor ?? 1),
      KAFKA_MIN_INSYNC_REPLICAS: String(kafka?.minInsyncReplicas ?? 1),
      WEBHOOK_ALLOW_LOOPBACK_HTTP: "true"
    })
    // The acquirer's bound at its product default (2 s): at 1 s a third of the authorizations and
    // settlements on the loaded shared machine timed out with no fault at all (their retries resumed
    // them, but cost the run half its rate); pm_card_timeout still gives the chosen share of unknowns.
    const apiEnv = {
      ...common, REDIS_URL: redis.url, IDEMPOTENCY_LOCK_TIMEOUT_MS: "3000", ACQUIRER_TIMEOUT_MS: "2000",
      OUTBOX_PUBLISHER_ENABLED: "false", CONSUMERS_ENABLED: "false", WEBHOOK_SENDER_ENABLED: "false"
    }
    // A killed consumer's partitions move after the session timeout: the shortest the process allows.
    const consumerEnv = { ...common, KAFKA_SESSION_TIMEOUT_MS: "6000" }
    const senderEnv = { ...common, WEBHOOK_TIMEOUT_MS: "2000", WEBHOOK_POLL_INTERVAL_MS: "200", WEBHOOK_RETRY_SCHEDULE_MS: webhookRetrySchedule_ms }
    const specs: ReadonlyArray<readonly [string, Record<string, string>, ProcessKind]> = [
      ["api-a", apiEnv, "api"], ["api-b", apiEnv, "api"],
      ["publisher-a", common, "publisher"], ["publisher-b", common, "publisher"],
      ["consumers-a", consumerEnv, "consumers"], ["consumers-b", consumerEnv, "consumers"],
      ["webhook-sender", senderEnv, "webhooks"]
    ]
    // Started two at a time: seven Node processes at once would starve the brokers on a small machine.
    const started = yield* Effect.forEach(specs, ([name, env, kind]) => startApi(name, env, kind, processStartTimeout_ms), { concurrency: 2 })
    const of = (kind: ProcessKind): ReadonlyArray<ApiProcess> => started.filter((_, i) => specs[i]?.[2] === kind)
    return {
      stack, kafka, redis, postgresProxy,
      apis: of("api"), publishers: of("publisher"), consumers: of("consumers"), webhooks: of("webhooks")
    }
  })

export type Topology = Effect.Success<ReturnType<typeof startTopology>>

/**
 * One endpoint per merchant, all event types, at the receiver; the secret (shown once) goes to the
 * receiver. A 5xx (a dependency not ready yet) is retried with the same key, at most 20 times.
 */
export const registerEndpoints = (api: ApiProcess, merchants: ReadonlyArray<ScenarioMerchant>, receiver: WebhookReceiver, log: (line: string) => void) =>
  Effect.forEach(merchants, (merchant, index) =>
    Effect.gen(function* () {
      const create = call(api.baseUrl, "POST", "/v1/webhook_endpoints", {
        apiKey: merchant.apiKey, idempotencyKey: `chaos-endpoint-${index}`, json: { url: receiver.urlFor(index), event_types: ["*"] }
      })
      let answer = yield* create
      for (let attempt = 1; answer.status >= 500 && attempt < 20; attempt++) {
        log(`webhook endpoint ${index}: ${answer.status} ${field(answer, "code")}, retrying with its key`)
        yield* Effect.sleep(500)
        answer = yield* create
      }
      const secret = field(answer, "secret")
      if (answer.status !== 201 || secret === "") return yield* new TopologyError({ message: `webhook endpoint not created: ${answer.status} ${answer.text.slice(0, 300)}\n${api.output().slice(-2_000)}` })
      receiver.setSecret(index, secret)
    }), { discard: true })
