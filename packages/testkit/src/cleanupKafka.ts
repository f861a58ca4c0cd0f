import { defaultKafkaAdminTimeouts, KafkaAdmin, KafkaError } from "@pay/infra"
import { Effect } from "effect"

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
    // Groups are empty by now (every consumer left when its scope closed).
    const groups = (yield* admin.listGroups).filter((group) => group.startsWith(prefix))
    yield* admin.deleteGroups(groups)
    return { topicsDeleted: topics.length, groupsDeleted: groups.length }
  }).pipe(Effect.scoped)
