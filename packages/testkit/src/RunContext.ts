import { inject } from "vitest"

/**
 * What the global setup hands to every test file: one id per `vitest run`, from which the run's
 * database names, Redis key prefix and Kafka topic prefix are derived. Two runs never share a name.
 */
export interface TestRun {
  readonly runId: string
  /** Server URL used to create and drop the run's databases (maintenance database `postgres`). */
  readonly adminDatabaseUrl: string
  /** The run's migrated template; every test file clones it (CREATE DATABASE … TEMPLATE). */
  readonly templateDatabase: string
  readonly redisUrl: string
  readonly redisKeyPrefix: string
  readonly kafkaBrokers: string
  readonly kafkaTopicPrefix: string
}

declare module "vitest" {
  export interface ProvidedContext {
    readonly testRun: TestRun
  }
}

export const testRun = (): TestRun => inject("testRun")
