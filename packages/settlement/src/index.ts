export * from "./Accounts.ts"
export * from "./Fees.ts"
export * from "./FeeSchedules.ts"
export * from "./SettlementPosting.ts"
