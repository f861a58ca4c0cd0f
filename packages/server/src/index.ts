export * from "./Server.ts"
export * from "./health/Readiness.ts"
