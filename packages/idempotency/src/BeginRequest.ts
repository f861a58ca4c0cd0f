import { canonicalBody, fingerprint } from "./Fingerprint.ts"
import type { BeginRequest, IdempotentRequest } from "./Model.ts"

/** What `begin` needs of an HTTP request: the canonical body and its fingerprint (`run` and `runAtOnce`). */
export const toBeginRequest = <A>(request: IdempotentRequest<A>): BeginRequest => {
  const body = canonicalBody(request.body)
  return {
    merchantId: request.merchantId,
    key: request.key,
    method: request.method.toUpperCase(),
    path: request.path,
    fingerprint: fingerprint({ method: request.method, path: request.path, canonicalBody: body }),
    canonicalBody: body,
    ...(request.operation === undefined ? {} : { operation: request.operation }),
    ...(request.lockTimeout_ms === undefined ? {} : { lockTimeout_ms: request.lockTimeout_ms }),
    ...(request.correlationId === undefined ? {} : { correlationId: request.correlationId }),
    ...(request.traceparent === undefined ? {} : { traceparent: request.traceparent })
  }
}

