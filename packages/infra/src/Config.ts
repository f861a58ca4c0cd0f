import { Config, Redacted } from "effect"

/**
 * Where the platform's dependencies are. Every value comes from the environment, with defaults
 * that point at the local stack started by `scripts/stack.sh up` (loopback addresses only).
 */
export const DatabaseUrl = Config.Redacted("DATABASE_URL").pipe(
  Config.withDefault(Redacted.make("postgres://postgres@127.0.0.1:5432/payments"))
)
export const RedisUrl = Config.String("REDIS_URL").pipe(Config.withDefault("redis://127.0.0.1:6379/0"))
export const KafkaBrokers = Config.String("KAFKA_BROKERS").pipe(Config.withDefault("127.0.0.1:9092"))
export const HttpPort = Config.Port("PORT").pipe(Config.withDefault(3000))

/** Prefixes that isolate one deployment (or one test run) from another on shared Redis and Kafka. */
export const RedisKeyPrefix = Config.String("REDIS_KEY_PREFIX").pipe(Config.withDefault("pay:"))
export const KafkaTopicPrefix = Config.String("KAFKA_TOPIC_PREFIX").pipe(Config.withDefault(""))

/** Pool size of the Postgres client; each request holds at most one connection. */
export const DatabasePoolSize = Config.Int("DATABASE_POOL_SIZE").pipe(Config.withDefault(20))
