// Checks docs/invariants.md: every row names a test that exists and the titles it quotes
// (InvariantsTable.ts). Prints one line per problem; exits 1 when there is any.
//
//   node scripts/ci/check-invariants.ts [--root DIR]
import { readdirSync, readFileSync } from "node:fs"
import { join, relative, resolve } from "node:path"
import { parseArgs } from "node:util"
import { checkInvariantsTable } from "./InvariantsTable.ts"

const { values } = parseArgs({ options: { root: { type: "string", default: process.cwd() } } })
const root = resolve(values.root)

/** Every `*.test.ts` under the folders Vitest runs (vitest.config.ts). */
const testFiles = (): ReadonlyArray<string> => {
  const found: Array<string> = []
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name)
      if (entry.isDirectory() && entry.name !== "node_modules") walk(path)
      else if (entry.isFile() && entry.name.endsWith(".test.ts")) found.push(relative(root, path))
    }
  }
  for (const pkg of readdirSync(join(root, "packages"))) {
    const dir = join(root, "packages", pkg, "test")
    try {
      walk(dir)
    } catch {
      // a package without tests
    }
  }
  walk(join(root, "scripts/ci/test"))
  return found
}

const problems = checkInvariantsTable(readFileSync(join(root, "docs/invariants.md"), "utf8"), {
  paths: testFiles(),
  read: (path) => readFileSync(join(root, path), "utf8")
})
for (const p of problems) console.log(`docs/invariants.md:${p.line} (${p.invariant}): ${p.problem}`)
console.log(problems.length === 0 ? "invariants table: every row names a test that exists" : `invariants table: ${problems.length} problem(s)`)
process.exitCode = problems.length === 0 ? 0 : 1
