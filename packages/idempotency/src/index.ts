export * from "./ApiKeys.ts"
export * from "./Fingerprint.ts"
export * from "./IdempotencyKey.ts"
export * from "./IdempotencyKeys.ts"
