import { NodeRuntime } from "@effect/platform-node"
import { Cause, Effect, Exit, Logger, Runtime } from "effect"
import { failureText as sqlFailureText, sqlErrorIn } from "../SqlFailure.ts"
import { batchedJsonWithTrace } from "./Logging.ts"
import { isSqlError } from "effect/sql/SqlError"

/**
 * What a failure says in one line: the tagged error's own words (a ConfigError, a listener that
 * could not listen), or the defect's; for a database failure, with the driver's reason (a refused
 * role, a lock timeout), which the client's own "Query failed" does not say.
 */
const failureText = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.squash(cause)
  if (!(error instanceof Error)) return String(error)
  const named = error.name === "Error" || error.name === "" ? "" : `${error.name}: `
  if (isSqlError(error)) return `${named}${sqlFailureText(error)}`
  const words = error.message === "" ? error.name : `${named}${error.message}`
  // A wrapper of a database failure (the migrator's MigrationError) says its cause's reason too.
  const wrapped = sqlErrorIn(error)
  return wrapped === undefined ? words : `${words} (${sqlFailureText(wrapped)})`
}

/**
 * A failure as one JSON line like every other log line (a log pipeline that parses JSON used to
 * drop exactly the line that said why the process died, printed in Effect's pretty format).
 * Outside the process's layers, so with a logger of its own (LOG_LEVEL may be what failed).
 */
const logFailure = (process: string) => (cause: Cause.Cause<unknown>) =>
  (Cause.hasInterruptsOnly(cause)
    // A clean stop says so (SIGTERM, SIGINT: its work finished first), so that a log read after a
    // restart tells a stopped process from a killed one (outside operator review).
    ? Effect.logInfo(`${process} stopped`)
    : Effect.logError(`${process} failed`, { error: failureText(cause), cause: Cause.pretty(cause) })).pipe(
    Effect.provide(Logger.layer([batchedJsonWithTrace]))
  )

/**
 * runMain's teardown, except that a stop by SIGTERM/SIGINT (interrupted, nothing else failed) is
 * exit 0, not 130: a clean stop is not a failure, and a process manager records 130 as one.
 */
const cleanStopIsSuccess: Runtime.Teardown = (exit, onExit) =>
  Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? onExit(0) : Runtime.defaultTeardown(exit, onExit)

/**
 * Runs a process's main effect (server, publisher, consumers, webhook sender): SIGTERM/SIGINT
 * interrupt it and a clean stop is one INFO line `"<process> stopped"` and exit 0; a failure, at
 * start-up (a setting out of bounds, a port taken) or later, is one JSON line `"<process> failed"`
 * with `error`, and exit 1.
 */
export const runProcessMain = (process: string) => <A, E>(main: Effect.Effect<A, E>): void =>
  main.pipe(
    // A finalizer (uninterruptible): the stopped line is written while SIGTERM's interruption ends the process.
    Effect.onExit((exit) => (Exit.isFailure(exit) ? logFailure(process)(exit.cause) : Effect.void)),
    NodeRuntime.runMain({ disableErrorReporting: true, teardown: cleanStopIsSuccess })
  )
