import { preloadKafkaLibrary, runProcessMain } from "@pay/infra"
import { Effect, Layer } from "effect"
import { isClusterPrimary, runPrimary, ServerInstances } from "./Cluster.ts"
import { LoggingLive, ServerLive } from "./Server.ts"

// SIGTERM/SIGINT interrupt the launched layer: the HTTP server stops accepting, in-flight
// requests finish, then workers and pools are released in reverse order, and the process exits 0
// (a failure: one JSON line "server failed", exit 1). With SERVER_INSTANCES > 1
// this process is the primary (Cluster.ts): it forwards the signal to every instance and waits.
// An instance imports the Kafka client library before its layers connect anywhere (infra
// Kafka.ts, preloadKafkaLibrary): a Postgres connection begun before that import timed out on a
// loaded machine and the server exited at start.
const program = Effect.gen(function* () {
  const instances = yield* ServerInstances
  return isClusterPrimary(instances)
    ? yield* runPrimary(instances).pipe(Effect.provide(LoggingLive))
    : yield* Effect.andThen(preloadKafkaLibrary, Layer.launch(ServerLive))
})

program.pipe(runProcessMain("server"))
