import { v7 } from "uuid"

/**
 * A new outbox event id (the CloudEvents `ce_id`, the `processed_events` key of every consumer):
 * a UUID version 7 (RFC 9562 §5.7), its first 48 bits the creation time in milliseconds, the rest
 * random (the `uuid` package's `v7`, which also keeps ids made in one millisecond in order:
 * ADR 0017). Time-ordered ids make the inserts into the primary keys that hold them
 * (`outbox_events`, `processed_events (consumer, event_id)`) land at the right edge of the index
 * instead of on a random leaf: fewer pages touched, split and written to the WAL per slice
 * (docs/consumers.md § Performance, eleventh round). Still a UUID (`uuidPattern`), still unique,
 * still opaque to consumers: nothing orders by it, and ids made before are version 4.
 */
export const newOutboxEventId = (): string => v7()
