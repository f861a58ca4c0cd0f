export * from "./OutboxWriter.ts"
