export * from "./RunContext.ts"
export * from "./names.ts"
export * from "./TestDatabase.ts"
export * from "./Throwaway.ts"
