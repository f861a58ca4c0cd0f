import { Effect } from "effect"
import type { ApiProcess } from "../ApiProcess.ts"
import type { ScenarioMerchant } from "../Evidence.ts"
import { type Answer, call, field } from "../Http.ts"
import { type Decided, decidedOf, type History, type HistoryEvent } from "./History.ts"
import { seededRandom } from "./Schedule.ts"

const currencies = ["USD", "EUR", "JPY"] as const
/**
 * A request without an answer after this is retried under the same key (safe: idempotency). Not
 * shorter: on the loaded 2-core machine a healthy refund or settle takes 2..4 s at p90, and a 4 s
 * bound turned a third of the refunds into retries that only met `idempotency_key_in_use`.
 */
const requestTimeout_ms = 8_000
/** Pause before retrying an undecided key: grows 100 ms per attempt up to 500 ms (only undecided answers wait). */
const retryPause_ms = (attempt: number) => Math.min(500, 100 * (attempt + 1))
/** Payments a client keeps open to authorize, settle, cancel or refund (bounded: the rest are done or abandoned). */
const openPayments_max = 4
/** Refunds tried per SETTLED payment before the client leaves it. */
const refundsPerPayment_max = 2

export interface ClientWorld {
  readonly apis: ReadonlyArray<ApiProcess>
  readonly merchants: ReadonlyArray<ScenarioMerchant>
  readonly history: History
  /**
   * Share of created payments the client abandons (a checkout never completed: created, then never
   * authorized; the expiry sweeper's business). The rest go through authorize, settle or cancel, and
   * refunds. Every payment is covered by every check either way.
   */
  readonly abandonShare: number
  /**
   * Payments created (201) so far, across clients, and the count at which the load stops early
   * (`--payments N`; undefined: the duration alone bounds the load).
   */
  readonly created: { count: number }
  readonly paymentsTarget: number | undefined
}

/** The load's stop condition besides the deadline: enough payments created (`--payments N`). */
export const enoughPayments = (world: ClientWorld) => world.paymentsTarget !== undefined && world.created.count >= world.paymentsTarget

/** One operation of one client: its key, where it goes, and whether it is duplicated. */
interface Operation {
  readonly client: number
  readonly op: HistoryEvent["op"]
  readonly merchant: number
  readonly key: string
  readonly path: string
  readonly body: Readonly<Record<string, unknown>> | undefined
  readonly payment_id: string
}

/**
 * Not decided yet: no answer, an overloaded or unavailable dependency, a key in use by another run,
 * or a 429 (nothing executed: a merchant's limit, e.g. its requests in flight waiting longer than
 * the queue's 2 s while a fault slows the database; retried like any merchant would).
 */
const undecided = (answer: Answer) =>
  answer.status >= 500 || answer.status === 429 || (answer.status === 409 && field(answer, "code") === "idempotency_key_in_use")

/** One attempt on one instance, recorded as invoke + ok / fail / unknown. */
const attempt = (world: ClientWorld, operation: Operation, instance: number) =>
  Effect.gen(function* () {
    const api = world.apis[instance] ?? world.apis[0]
    const m = world.merchants[operation.merchant] ?? world.merchants[0]
    if (api === undefined || m === undefined) return undefined
    const base = { client: operation.client, op: operation.op, key: operation.key, payment_id: operation.payment_id, instance }
    world.history.record({ ...base, phase: "invoke" })
    const result = yield* Effect.result(call(api.baseUrl, "POST", operation.path, {
      apiKey: m.apiKey, idempotencyKey: operation.key, json: operation.body, timeout_ms: requestTimeout_ms
    }))
    if (result._tag === "Failure") {
      world.history.record({ ...base, phase: "unknown" })
      return undefined
    }
    const answer = result.success
    world.history.record({ ...base, phase: undecided(answer) ? "unknown" : answer.status < 300 ? "ok" : "fail", status: answer.status, body: answer.text })
    return undecided(answer) ? undefined : answer
  })

/** Retries the same key (random instance each time) until decided or `attempts` run out. */
export const untilDecided = (world: ClientWorld, operation: Operation, random: () => number, attempts: number) =>
  Effect.gen(function* () {
    for (let i = 0; i < attempts; i++) {
      const answer = yield* attempt(world, operation, random() < 0.5 ? 0 : 1)
      if (answer !== undefined) return answer
      yield* Effect.sleep(retryPause_ms(i))
    }
    return undefined
  })

export interface ClientResult {
  readonly decided: ReadonlyArray<Decided>
  /** Operations still undecided when the client stopped: the drain finishes them with their keys. */
  readonly pending: ReadonlyArray<Operation>
  readonly operations: number
  readonly duplicated: number
}

const decide = (operation: Operation, answers: ReadonlyArray<Answer>, duplicated: boolean): Decided | undefined => {
  const first = answers[0]
  if (first === undefined) return undefined
  const payment_id = operation.payment_id === "" ? field(first, "id") : operation.payment_id
  return decidedOf({ op: operation.op, key: operation.key, merchant: operation.merchant, payment_id, status: first.status, duplicated }, answers.map((a) => a.text))
}

/** A payment a client still works on. */
interface Open {
  status: string
  readonly merchant: number
  refunds: number
}

/** Runs one client's loop until `deadline_ms` (performance.now()); every loop is bounded by the deadline and the retry bounds. */
export const runClient = (world: ClientWorld, client: number, seed: number, deadline_ms: number) =>
  Effect.gen(function* () {
    const random = seededRandom(seed * 1_000 + client)
    const mine = new Map<string, Open>()
    const decided: Array<Decided> = []
    const pending: Array<Operation> = []
    let operations = 0
    let duplicated = 0
    while (performance.now() < deadline_ms && !enoughPayments(world)) {
      const operation = nextOperation(client, random, mine)
      operations += 1
      const mode = random()
      const answers: Array<Answer> = []
      if (mode < 0.2) {
        // Two at once under one key, on both instances: a double click through a load balancer.
        duplicated += 1
        const pair = yield* Effect.all([untilDecided(world, operation, random, 30), untilDecided(world, operation, random, 30)], { concurrency: 2 })
        for (const answer of pair) if (answer !== undefined) answers.push(answer)
      } else {
        const answer = yield* untilDecided(world, operation, random, 30)
        if (answer !== undefined) answers.push(answer)
        if (answer !== undefined && mode < 0.4) {
          // A retry after a lost answer: the same key again, which must replay the same bytes.
          duplicated += 1
          const again = yield* untilDecided(world, operation, random, 30)
          if (again !== undefined) answers.push(again)
          if (operation.op === "create" && mode < 0.27) yield* reuseWithOtherBody(world, operation, random, decided)
        }
      }
      const result = decide(operation, answers, mode < 0.4)
      if (result === undefined) {
        pending.push(operation)
        continue
      }
      decided.push(result)
      if (operation.op === "create" && result.status === 201) world.created.count += 1
      track(mine, result, operation.op === "create" && random() < world.abandonShare)
    }
    const outcome: ClientResult = { decided, pending, operations, duplicated }
    return outcome
  })

/** The same key with a different amount: must be refused (422), never a second payment. */
const reuseWithOtherBody = (world: ClientWorld, operation: Operation, random: () => number, decided: Array<Decided>) =>
  Effect.gen(function* () {
    const body = { ...operation.body, amount: 1 }
    const reuse: Operation = { ...operation, op: "reuse", body }
    const answer = yield* untilDecided(world, reuse, random, 30)
    if (answer !== undefined) decided.push(decidedOf({ op: "reuse", key: operation.key, merchant: operation.merchant, payment_id: "", status: answer.status, duplicated: true }, [answer.text]))
  })

/** Follows the client's payments: a new one is kept open (unless abandoned), a final one dropped. */
const track = (mine: Map<string, Open>, result: Decided, abandon: boolean) => {
  // A refund's answer is the refund's status, not the payment's (which stays SETTLED).
  if (result.op === "refund") {
    const refunded = mine.get(result.payment_id)
    if (refunded !== undefined && ++refunded.refunds >= refundsPerPayment_max) mine.delete(result.payment_id)
    return
  }
  // A refused step (a decline, an illegal transition): the client leaves that payment.
  if (result.status >= 300) {
    mine.delete(result.payment_id)
    return
  }
  const known = mine.get(result.payment_id)
  const open = result.acked === "CREATED" || result.acked === "AUTHORIZED" || result.acked === "SETTLED"
  if (!open) mine.delete(result.payment_id)
  else if (known !== undefined) known.status = result.acked
  else if (result.op === "create" && !abandon) mine.set(result.payment_id, { status: result.acked, merchant: result.merchant, refunds: 0 })
}

const nextOperation = (client: number, random: () => number, mine: ReadonlyMap<string, Open>): Operation => {
  // SETTLED payments stay open for refunds (issue 19): the cap refuses what does not fit (422).
  const key = `chaos-${client}-${crypto.randomUUID()}`
  const ids = [...mine.keys()]
  const id = ids[Math.floor(random() * ids.length)]
  const target = id === undefined ? undefined : mine.get(id)
  if (id === undefined || target === undefined || (mine.size < openPayments_max && random() < 0.3)) {
    const merchant = random() < 0.5 ? 0 : 1
    const roll = random()
    const payment_method = roll < 0.1 ? "pm_card_declined" : roll < 0.15 ? "pm_card_timeout" : "pm_card_visa"
    const currency = currencies[Math.floor(random() * currencies.length)] ?? "USD"
    const body = { amount: 100 + Math.floor(random() * 100_000), currency, payment_method }
    return { client, op: "create", merchant, key, path: "/v1/payments", body, payment_id: "" }
  }
  if (target.status === "SETTLED") {
    // Partial refunds of up to 500 minor units: several per payment, some beyond the capture.
    const body = { amount: 1 + Math.floor(random() * 500) }
    return { client, op: "refund", merchant: target.merchant, key, path: `/v1/payments/${id}/refunds`, body, payment_id: id }
  }
  // A created payment is canceled one time in ten (before any authorization: nothing to void),
  // authorized otherwise; an authorization is voided one time in five, captured otherwise. A
  // client owns its payments, so a cancel never races an authorization here (that race is
  // cancel-before-authorization.test.ts's).
  const op = target.status === "CREATED" ? (random() < 0.1 ? "cancel" : "authorize") : random() < 0.2 ? "cancel" : "settle"
  return { client, op, merchant: target.merchant, key, path: `/v1/payments/${id}/${op}`, body: undefined, payment_id: id }
}
