// Prints one free loopback port below the kernel's ephemeral range (packages/testkit/src/FreePort.ts),
// for the throwaway instances `stack.sh throwaway` starts.
import { pickFreePort } from "../packages/testkit/src/FreePort.ts"

console.log(await pickFreePort())
