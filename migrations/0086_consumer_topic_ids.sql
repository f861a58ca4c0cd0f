-- Which incarnation of a topic a consumer's stored offsets are positions in: the topic id Kafka
-- gives a topic when it is created (a topic deleted and created again under the same name gets
-- another). A consumer that finds another id than the one stored here reads the topic again from
-- offset 0 (ConsumerRunner.ts; events already applied are duplicates by id). Comparing offsets with
-- the log end alone missed a topic re-created while the consumers ran and refilled past the old
-- offsets before they subscribed again: every record below them was skipped as "behind" (outside
-- fault re-test). Bookkeeping like consumer_offsets: the application inserts and updates it.
CREATE TABLE consumer_topic_ids (
  consumer text NOT NULL CHECK (consumer ~ '^[a-z0-9_.-]+$' AND length(consumer) <= 100),
  topic text NOT NULL CHECK (length(topic) BETWEEN 1 AND 249),
  topic_id text NOT NULL CHECK (length(topic_id) BETWEEN 1 AND 64),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer, topic)
);

GRANT SELECT, INSERT, UPDATE ON consumer_topic_ids TO pay_app;
