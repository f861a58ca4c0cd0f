import { NodeRuntime } from "@effect/platform-node"
import { Layer } from "effect"
import { ServerLive } from "./Server.ts"

// SIGTERM/SIGINT interrupt the launched layer: the HTTP server stops accepting, in-flight
// requests finish, then workers and pools are released in reverse order.
Layer.launch(ServerLive).pipe(NodeRuntime.runMain)
