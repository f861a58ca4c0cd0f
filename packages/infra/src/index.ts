export * as AppConfig from "./Config.ts"
export * from "./Postgres.ts"
export * from "./Redis.ts"
export * from "./SqlScript.ts"
