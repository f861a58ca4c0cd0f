export * from "./Correlation.ts"
export * from "./Logging.ts"
export * from "./Tracing.ts"
export * from "./RuntimeMetrics.ts"
