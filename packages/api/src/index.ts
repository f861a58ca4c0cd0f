export * from "./Api.ts"
export * from "./Problems.ts"
export * from "./SystemApi.ts"
