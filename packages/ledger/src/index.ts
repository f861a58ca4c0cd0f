export * from "./Errors.ts"
export * from "./Ledger.ts"
export * from "./Model.ts"
export * from "./Validation.ts"
