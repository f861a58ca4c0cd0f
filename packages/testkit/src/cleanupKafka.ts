import { defaultKafkaAdminTimeouts, KafkaAdmin, KafkaError } from "@pay/infra"
import { Effect } from "effect"

/**
 * Group deletion is retried: a group stays non-empty for a moment after its last member left (the
 * coordinator removes members on their LeaveGroup, or at the session timeout for one that crashed).
 * Attempt n waits 250 ms × n before the next: 12 attempts wait 16.5 s in all, past the consumers'
 * 10 s session timeout (KafkaConsumerModel), after which the broker drops a member that never left.
 */
export const groupDeletion = { attempts_max: 12, backoffStep_ms: 250 } as const

/** The run's groups still on the broker (re-listed each attempt: a deleted one is gone, a new one counts). */
const deleteGroupsBounded = (admin: KafkaAdmin["Service"], prefix: string) =>
  Effect.gen(function* () {
    for (let attempt = 1; ; attempt++) {
      const groups = (yield* admin.listGroups).filter((group) => group.startsWith(prefix))
      if (groups.length === 0) return 0
      const result = yield* Effect.result(admin.deleteGroups(groups))
      if (result._tag === "Success") return groups.length
      if (attempt >= groupDeletion.attempts_max) {
        yield* Effect.logWarning(`Kafka cleanup: ${groups.length} consumer group(s) under ${prefix} still not deleted after ${attempt} attempts: ${groups.join(", ")}`)
        return yield* result.failure
      }
      yield* Effect.sleep(groupDeletion.backoffStep_ms * attempt)
    }
  })

/**
 * Deletes every topic and consumer group whose name starts with the run's prefix (`t.<runId>.`).
 * An empty or too short prefix is refused: it would delete the whole cluster's topics.
 */
export const cleanupKafkaPrefix = (brokers: string, prefix: string) =>
  Effect.gen(function* () {
    if (prefix.length < 3) {
      return yield* Effect.fail(
        new KafkaError({ operation: "cleanup", message: `refusing to delete topics under prefix ${JSON.stringify(prefix)}`, retriable: false, code: "INVALID_ARGUMENT" })
      )
    }
    const admin = yield* KafkaAdmin.make({ brokers, clientId: "pay-testkit-cleanup", ...defaultKafkaAdminTimeouts })
    const topics = (yield* admin.listTopics).filter((topic) => topic.startsWith(prefix))
    yield* admin.deleteTopics(topics)
    // Every consumer left when its scope closed, but the broker may not have removed it yet.
    const groupsDeleted = yield* deleteGroupsBounded(admin, prefix)
    return { topicsDeleted: topics.length, groupsDeleted }
  }).pipe(Effect.scoped)
