export * from "./Acquirer.ts"
export * from "./Simulator.ts"
