/**
 * CPU accounting from /proc (Linux), shared by the benchmarks. Ticks are USER_HZ (100 per second
 * on every common build).
 */
import { readFileSync } from "node:fs"

export const userHz = 100

/** A process's name and its CPU ticks (utime + stime) from its /proc/<pid>/stat; undefined when it has gone. */
export const processStat = (pid: number): { readonly comm: string; readonly ticks: number } | undefined => {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  } catch {
    return undefined
  }
  const close = stat.lastIndexOf(")")
  // Fields 14 and 15 (utime, stime); `rest` starts at field 3 (the name may hold spaces).
  const rest = stat.slice(close + 2).split(" ")
  return { comm: stat.slice(stat.indexOf("(") + 1, close), ticks: Number(rest[11]) + Number(rest[12]) }
}

/** CPU ticks of these processes together; one that has gone counts 0. */
export const processTicks = (pids: Iterable<number>): number => {
  let ticks = 0
  for (const pid of pids) ticks += processStat(pid)?.ticks ?? 0
  return ticks
}

/** The machine's busy and total ticks since boot, summed over its CPUs (/proc/stat's first line). */
export const machineTicks = (): { readonly busy: number; readonly total: number } => {
  const fields = (readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "").trim().split(/\s+/).slice(1).map(Number)
  const total = fields.reduce((sum, value) => sum + value, 0)
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0)
  return { busy: total - idle, total }
}
