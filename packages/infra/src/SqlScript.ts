/**
 * Splits a SQL script into statements. The Postgres driver speaks only the extended protocol,
 * which takes one statement per message, so a migration file is sent statement by statement
 * (inside one transaction). Aware of 'strings', "identifiers", $tag$ dollar quotes $tag$,
 * -- line comments and block comments; a `;` inside any of those does not end a statement.
 */
export const splitSqlStatements = (script: string): ReadonlyArray<string> => {
  const statements: Array<string> = []
  let start = 0
  let i = 0
  const n = script.length
  const push = (end: number) => {
    const text = script.slice(start, end).trim()
    if (stripComments(text).trim().length > 0) statements.push(text)
  }
  while (i < n) {
    const c = script[i]
    const next = script[i + 1]
    if (c === "-" && next === "-") {
      const eol = script.indexOf("\n", i)
      i = eol === -1 ? n : eol + 1
    } else if (c === "/" && next === "*") {
      const close = script.indexOf("*/", i + 2)
      i = close === -1 ? n : close + 2
    } else if (c === "'" || c === '"') {
      i = skipQuoted(script, i, c)
    } else if (c === "$") {
      const tag = /^\$[A-Za-z_0-9]*\$/.exec(script.slice(i))
      if (tag === null) {
        i++
      } else {
        const close = script.indexOf(tag[0], i + tag[0].length)
        i = close === -1 ? n : close + tag[0].length
      }
    } else if (c === ";") {
      push(i)
      start = i + 1
      i++
    } else {
      i++
    }
  }
  push(n)
  return statements
}

const skipQuoted = (script: string, from: number, quote: string): number => {
  let i = from + 1
  while (i < script.length) {
    if (script[i] === quote) {
      if (script[i + 1] === quote) i += 2 // doubled quote is an escaped quote
      else return i + 1
    } else i++
  }
  return script.length
}

const stripComments = (text: string): string => text.replace(/--[^\n]*/g, "").replace(/\/\*[\s\S]*?\*\//g, "")
