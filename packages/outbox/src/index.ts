export * from "./OutboxWriter.ts"
export * from "./CloudEvents.ts"
export * from "./OutboxStore.ts"
export * from "./Publisher.ts"
