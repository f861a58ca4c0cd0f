/**
 * `docs/invariants.md` promises, row by row, a test that tries to break each invariant. This checks
 * the promise can be kept: in every table with a "Proven by test" column, each row names at least
 * one test file that exists (`name.test.ts`, or a path to one), and each quoted title fragment
 * written after a file ("a second ledger posting…") occurs in that file. A fragment may leave words
 * out with "…": each piece must occur. A row whose test is not written yet says so in its test
 * cell with `*planned: issue N*`, and is the only kind allowed to name no test.
 */

export interface TestFiles {
  /** Paths (from the repository root) of every test file. */
  readonly paths: ReadonlyArray<string>
  readonly read: (path: string) => string
}

export interface RowProblem {
  readonly line: number
  readonly invariant: string
  readonly problem: string
}

interface Row {
  readonly line: number
  readonly invariant: string
  readonly proof: string
}

const cellsOf = (line: string) =>
  line.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((cell) => cell.trim())

const isSeparator = (cells: ReadonlyArray<string>) => cells.every((cell) => /^:?-+:?$/.test(cell))

/** Rows of every table whose header has a "Proven by test" column, with that column's cell. */
export const proofRows = (markdown: string): ReadonlyArray<Row> => {
  const rows: Array<Row> = []
  let proofColumn: number | undefined
  markdown.split("\n").forEach((text, index) => {
    if (!text.trim().startsWith("|")) {
      proofColumn = undefined
      return
    }
    const cells = cellsOf(text)
    const header = cells.findIndex((cell) => /^proven by test$/i.test(cell))
    if (header >= 0) {
      proofColumn = header
      return
    }
    if (proofColumn === undefined || isSeparator(cells)) return
    rows.push({ line: index + 1, invariant: cells[0] ?? "", proof: cells[proofColumn] ?? "" })
  })
  return rows
}

const testFileReference = /`?((?:[\w.-]+\/)*[\w.-]+\.test\.ts)`?/g
const quoted = /"([^"]+)"/g

/** The cell cut into (file, the quoted fragments written after it up to the next file). */
const referencesOf = (proof: string) => {
  const files = [...proof.matchAll(testFileReference)].map((match) => ({ file: match[1] ?? "", at: match.index ?? 0 }))
  const fragments = [...proof.matchAll(quoted)].map((match) => ({ fragment: match[1] ?? "", at: match.index ?? 0 }))
  const orphans = fragments.filter((f) => files.every((file) => file.at > f.at)).map((f) => f.fragment)
  const withFragments = files.map((file, index) => {
    const until = files[index + 1]?.at ?? Number.POSITIVE_INFINITY
    return { file: file.file, fragments: fragments.filter((f) => f.at > file.at && f.at < until).map((f) => f.fragment) }
  })
  return { files: withFragments, orphans }
}

const resolveFile = (files: TestFiles, name: string): { readonly path?: string; readonly problem?: string } => {
  if (name.includes("/")) {
    return files.paths.includes(name) ? { path: name } : { problem: `names ${name}, which does not exist` }
  }
  const matches = files.paths.filter((path) => path === name || path.endsWith(`/${name}`))
  if (matches.length === 1) return { path: matches[0] ?? name }
  return matches.length === 0
    ? { problem: `names ${name}, which does not exist` }
    : { problem: `names ${name}, which is ambiguous (${matches.join(", ")}): give its path` }
}

/** The pieces of a fragment that must occur in the test file ("a … b…" → ["a", "b"]). */
export const fragmentPieces = (fragment: string) =>
  fragment.split(/…|\.\.\./).map((piece) => piece.trim()).filter((piece) => piece.length > 0)

const checkRow = (row: Row, files: TestFiles): ReadonlyArray<string> => {
  const planned = /\*planned: issue \d+\*/.test(row.proof)
  const { files: referenced, orphans } = referencesOf(row.proof)
  const problems = orphans.map((fragment) => `quotes "${fragment}" before naming any test file: name the file first`)
  if (referenced.length === 0 && !planned) problems.push("names no test file (`name.test.ts`); a row not built yet says `*planned: issue N*`")
  for (const { file, fragments } of referenced) {
    const resolved = resolveFile(files, file)
    if (resolved.path === undefined) {
      problems.push(resolved.problem ?? `names ${file}`)
      continue
    }
    const text = files.read(resolved.path)
    for (const fragment of fragments) {
      const missing = fragmentPieces(fragment).filter((piece) => !text.includes(piece))
      if (missing.length > 0) problems.push(`quotes "${fragment}" but ${resolved.path} has no ${missing.map((m) => JSON.stringify(m)).join(", ")}`)
    }
  }
  return problems
}

export const checkInvariantsTable = (markdown: string, files: TestFiles): ReadonlyArray<RowProblem> =>
  proofRows(markdown).flatMap((row) =>
    checkRow(row, files).map((problem) => ({ line: row.line, invariant: row.invariant.slice(0, 80), problem })))
