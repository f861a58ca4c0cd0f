export * from "./RunContext.ts"
export * from "./names.ts"
export * from "./TestDatabase.ts"
export * from "./Throwaway.ts"
export * from "./ThrowawayKafka.ts"
export * from "./Latency.ts"
export * from "./SqlRefusal.ts"
// freePort comes from ThrowawayKafka.ts (the same port, its own error); ChildProcess's is at @pay/testkit/ChildProcess.
export {
  answersOk,
  awaitReady,
  type Child,
  type ChildExit,
  ChildProcessError,
  launchChild,
  type LaunchOptions,
  type ManagedProcess,
  type ManagedProcessOptions,
  startManagedProcess
} from "./ChildProcess.ts"
