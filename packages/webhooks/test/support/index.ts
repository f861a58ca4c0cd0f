export * from "./OutboxFeed.ts"
export * from "./Receiver.ts"
