import { assert, layer } from "@effect/vitest"
import { expectSqlRefusal, makeTestDatabase } from "@pay/testkit"
import { decodeRows } from "@pay/infra"
import { Effect, Exit, Layer, Schema } from "effect"
import { randomUUID } from "node:crypto"
import { WebhookSecretBoxPlaintext } from "../src/SecretSealing.ts"
import { SqlClient } from "effect/sql"
import { Webhook, WebhookVerificationError } from "standardwebhooks"
import { WebhookSender } from "../src/DeliveryWorker.ts"
import { WebhookDeliveries } from "../src/Deliveries.ts"
import { WebhookEndpoints } from "../src/Endpoints.ts"
import { defaultSenderOptions, ENDPOINTS_PER_MERCHANT_MAX } from "../src/Model.ts"
import { secretPattern } from "../src/Signing.ts"
import { createMerchant, enqueue, newPaymentId, paymentEvent } from "./support/Fixtures.ts"
import { type Received, startReceiver } from "./support/Receiver.ts"

const TestLayer = Layer.mergeAll(
  WebhookEndpoints.layerWith({ allowLoopbackHttp: true }),
  WebhookDeliveries.layer,
  WebhookSender.layerWith({ ...defaultSenderOptions, timeout_ms: 1_000, allowLoopbackHttp: true })
).pipe(Layer.provideMerge(makeTestDatabase({ maxConnections: 6 })))

const headersOf = (r: Received) => ({ "webhook-id": r.id, "webhook-timestamp": r.timestamp, "webhook-signature": r.signature })

layer(TestLayer.pipe(Layer.provide(WebhookSecretBoxPlaintext)), { excludeTestServices: true })("webhook endpoints (real Postgres)", (it) => {
  it.effect("register, list, read, update, disable, enable, delete; the secret is returned only at creation and rotation", () =>
    Effect.gen(function* () {
      const merchantId = yield* createMerchant
      const other = yield* createMerchant
      const endpoints = yield* WebhookEndpoints
      const { endpoint, secret } = yield* endpoints.create(merchantId, { url: "https://merchant.example/hooks", event_types: ["payment_settled", "payment_settled"], description: "prod" })
      assert.match(secret, secretPattern)
      assert.deepStrictEqual(endpoint.event_types, ["payment_settled"])
      assert.notProperty(endpoint, "secret")
      assert.strictEqual((yield* endpoints.list(merchantId, { limit: 10 })).data.length, 1)
      assert.strictEqual((yield* endpoints.list(other, { limit: 10 })).data.length, 0, "another merchant sees nothing")
      const notOurs = yield* Effect.exit(endpoints.get(other, endpoint.id))
      assert.isTrue(Exit.isFailure(notOurs))
      const updated = yield* endpoints.update(merchantId, endpoint.id, { event_types: ["payment_created", "*"] })
      // `*` already names every type: stored alone, as the sender reads it.
      assert.deepStrictEqual([updated.event_types, updated.url], [["*"], "https://merchant.example/hooks"])
      assert.strictEqual((yield* endpoints.disable(merchantId, endpoint.id)).disabled_reason, "merchant")
      assert.strictEqual((yield* endpoints.enable(merchantId, endpoint.id)).status, "enabled")
      yield* endpoints.remove(merchantId, endpoint.id)
      assert.isTrue(Exit.isFailure(yield* Effect.exit(endpoints.get(merchantId, endpoint.id))))
      const sql = yield* SqlClient.SqlClient
      const secrets = yield* sql`SELECT 1 FROM webhook_endpoint_secrets WHERE endpoint_id = ${endpoint.id}`
      assert.strictEqual(secrets.length, 0, "a deleted endpoint's secrets are gone")
      assert.strictEqual((yield* endpoints.list(merchantId, { limit: 10 })).data.length, 0)
    }))

  it.effect("a URL is stored as the sender calls it (the parser's form): an upper-case scheme or host is taken, not a 500; spaces, tabs, line breaks, controls, bidi overrides and marks, zero-width and other Unicode spaces, ports 0 and above 65535 are refused naming the url, nothing written (outside attack review, contract fuzz)", () =>
    Effect.gen(function* () {
      const merchantId = yield* createMerchant
      const endpoints = yield* WebhookEndpoints
      // Stored as sent, these failed the table's `^https?://` CHECK: 500 invariant_violation.
      const upper = yield* endpoints.create(merchantId, { url: "HTTPS://Merchant.EXAMPLE/Hooks?A=1", event_types: ["*"] })
      assert.strictEqual(upper.endpoint.url, "https://merchant.example/Hooks?A=1")
      const mixed = yield* endpoints.update(merchantId, upper.endpoint.id, { url: "Https://merchant.example:8443/v2" })
      assert.strictEqual(mixed.url, "https://merchant.example:8443/v2")
      for (const url of [" https://merchant.example/a", "\thttps://merchant.example/a", "https://merchant.example/a ", "https://merch\nant.example/a", "https://merchant.example/a\rb",
        "https://merchant.example/\u202Egpj.exe", "https://merchant.example/\u0085", "https://merchant.example:0/a",
        // Unicode spaces and line breaks, bidirectional marks, zero-width characters: percent-encoded
        // silently before (outside contract fuzz); and a port the parser refused as "not a URL".
        "https://merchant.example/h\u00A0x", "https://merchant.example/h\u2028", "https://merchant.example/h\u200E", "https://merchant.example/h\u200F",
        "https://merchant.example/h\u061C", "https://merchant.example/h\uFEFF", "https://merchant.example/h\u200B", "https://merchant.example/h\u3000",
        // Characters that display as nothing, dropped from a host by IDNA or percent-encoded in a path;
        // private use and unassigned (outside re-test).
        "https://merchant.exa\u3164mple/a", "https://merch\u034Fant.example/a", "https://merchant.exam\uFE0Fple/a", "https://merchant.example/a\u2800b",
        "https://merchant.example/a\uFFA0b", "https://merchant.example/a\u{E0100}b", "https://merchant.example/a\uE000b", "https://merchant.example/a\u0378b",
        // The same invisible characters percent-encoded in the host: decoded, then dropped by IDNA.
        "https://exa%E3%85%A4mple.com/", "https://exam%E2%80%8Bple.com/", "https://user@exa%C2%ADmple.com/",
        // … however the slashes after the scheme are written (the parser reads each as https://).
        "https:\\\\exa%E3%85%A4mple.com/", "https:/exa%E3%85%A4mple.com/", "https:exa%E3%85%A4mple.com/", "https:///exa%E3%85%A4mple.com/",
        "https://merchant.example:65536/a", "https://merchant.example:99999999999999999999/a",
        // 725 characters as sent, 6,325 percent-encoded: the stored form is what must fit 2,048.
        `https://merchant.example/${"€".repeat(700)}`]) {
        const refused = yield* Effect.flip(endpoints.create(merchantId, { url, event_types: ["*"] }))
        assert.strictEqual(refused._tag, "WebhookEndpointRefused", JSON.stringify(url))
        if (refused._tag === "WebhookEndpointRefused") assert.strictEqual(refused.field, "url", JSON.stringify(url))
        const unchanged = yield* Effect.flip(endpoints.update(merchantId, upper.endpoint.id, { url }))
        assert.strictEqual(unchanged._tag, "WebhookEndpointRefused", JSON.stringify(url))
      }
      assert.strictEqual((yield* endpoints.list(merchantId, { limit: 10 })).data.length, 1)
      assert.strictEqual((yield* endpoints.get(merchantId, upper.endpoint.id)).url, "https://merchant.example:8443/v2")
      // International host names, combining marks (a Devanagari virama) included, are still taken.
      const idn = yield* endpoints.create(merchantId, { url: "https://b\u00FCcher.example/h", event_types: ["*"] })
      assert.strictEqual(idn.endpoint.url, "https://xn--bcher-kva.example/h")
      const devanagari = yield* endpoints.create(merchantId, { url: "https://\u0939\u093F\u0928\u094D\u0926\u0940.example/h", event_types: ["*"] })
      assert.match(devanagari.endpoint.url, /^https:\/\/xn--[a-z0-9-]+\.example\/h$/u)
    }))

  it.effect("a rotation moves updated_at; a new URL starts a fresh failure streak, an update that keeps the URL keeps it (outside merchant audit)", () =>
    Effect.gen(function* () {
      const merchantId = yield* createMerchant
      const endpoints = yield* WebhookEndpoints
      const sql = yield* SqlClient.SqlClient
      const { endpoint } = yield* endpoints.create(merchantId, { url: "https://merchant.example/old", event_types: ["*"] })
      yield* sql`UPDATE webhook_endpoints SET updated_at = now() - interval '1 hour' WHERE id = ${endpoint.id}`
      const before = yield* endpoints.get(merchantId, endpoint.id)
      const { endpoint: rotated } = yield* endpoints.rotateSecret(merchantId, endpoint.id, 0)
      assert.isAbove(rotated.updated_at.getTime(), before.updated_at.getTime() + 30 * 60_000, "the rotation is a change of the endpoint")
      assert.deepStrictEqual((yield* endpoints.get(merchantId, endpoint.id)).updated_at, rotated.updated_at)

      // Four days of failures at the old URL.
      yield* sql`UPDATE webhook_endpoints SET failing_since = now() - interval '4 days' WHERE id = ${endpoint.id}`
      const described = yield* endpoints.update(merchantId, endpoint.id, { description: "same receiver", url: "https://merchant.example/old" })
      assert.isNotNull(described.failing_since, "the same URL: the streak goes on")
      const moved = yield* endpoints.update(merchantId, endpoint.id, { url: "https://merchant.example/new" })
      assert.isNull(moved.failing_since, "a new URL: its own streak starts at its first failure")
      assert.strictEqual(moved.url, "https://merchant.example/new")
    }))

  it.effect("an endpoint whose description was stored before 0081/0083's rules (a card number, a bidirectional embedding) still has its URL and event types changed; a new description is checked", () =>
    Effect.gen(function* () {
      const merchantId = yield* createMerchant
      const endpoints = yield* WebhookEndpoints
      const sql = yield* SqlClient.SqlClient
      const { endpoint } = yield* endpoints.create(merchantId, { url: "https://merchant.example/a", event_types: ["*"] })
      const older = "\u202Bשלום\u202C ops, card 4242 4242 4242 4242"
      // Written as the owner could before the rules (triggers off for this one statement).
      yield* sql.withTransaction(Effect.gen(function* () {
        yield* sql`ALTER TABLE webhook_endpoints DISABLE TRIGGER webhook_endpoints_free_text_displayable`
        yield* sql`ALTER TABLE webhook_endpoints DISABLE TRIGGER webhook_endpoints_card_data_refused`
        yield* sql`UPDATE webhook_endpoints SET description = ${older} WHERE id = ${endpoint.id}`
        yield* sql`ALTER TABLE webhook_endpoints ENABLE TRIGGER webhook_endpoints_card_data_refused`
        yield* sql`ALTER TABLE webhook_endpoints ENABLE TRIGGER webhook_endpoints_free_text_displayable`
      }))
      const moved = yield* endpoints.update(merchantId, endpoint.id, { url: "https://merchant.example/b", event_types: ["payment_settled"] })
      assert.deepStrictEqual([moved.url, moved.event_types, moved.description], ["https://merchant.example/b", ["payment_settled"], older])
      const refused = yield* Effect.exit(endpoints.update(merchantId, endpoint.id, { description: "still \u202E" }))
      assert.isTrue(Exit.isFailure(refused), "a new description is checked")
      const described = yield* endpoints.update(merchantId, endpoint.id, { description: "ops team" })
      assert.strictEqual(described.description, "ops team")
    }))

  it.effect("the code refuses unsafe URLs, unknown event types, a card number as description and more endpoints than the limit", () =>
    Effect.gen(function* () {
      const merchantId = yield* createMerchant
      const endpoints = yield* WebhookEndpoints
      for (const url of ["http://merchant.example/", "https://169.254.169.254/", "https://10.1.2.3/", "gopher://x"]) {
        const refused = yield* Effect.flip(endpoints.create(merchantId, { url, event_types: ["*"] }))
        assert.strictEqual(refused._tag, "WebhookEndpointRefused", url)
      }
      const unknownType = yield* Effect.flip(endpoints.create(merchantId, { url: "https://merchant.example/", event_types: ["payment_refunded"] }))
      assert.strictEqual(unknownType._tag, "WebhookEndpointRefused")
      // No card data in the description, on create or update; the number is not echoed back.
      const card = yield* Effect.flip(endpoints.create(merchantId, { url: "https://merchant.example/", event_types: ["*"], description: "test card 4242 4242 4242 4242" }))
      assert.deepInclude(card, { _tag: "WebhookEndpointRefused", field: "description" })
      assert.notInclude(JSON.stringify(card), "4242")
      const { endpoint: described } = yield* endpoints.create(merchantId, { url: "https://merchant.example/d", event_types: ["*"], description: "order 4242424242424243 (not a card: Luhn)" })
      const cardUpdate = yield* Effect.flip(endpoints.update(merchantId, described.id, { description: "4111-1111-1111-1111" }))
      assert.deepInclude(cardUpdate, { _tag: "WebhookEndpointRefused", field: "description" })
      yield* endpoints.remove(merchantId, described.id)
      for (let i = 0; i < ENDPOINTS_PER_MERCHANT_MAX; i++) yield* endpoints.create(merchantId, { url: `https://merchant.example/${i}`, event_types: ["*"] })
      const over = yield* Effect.flip(endpoints.create(merchantId, { url: "https://merchant.example/over", event_types: ["*"] }))
      // A quota, not a bad URL: its own error (409 webhook_endpoint_limit_reached at the API).
      assert.strictEqual(over._tag, "WebhookEndpointLimitReached")
    }))

  it.effect("rotation: while the old secret overlaps, each request carries both signatures and either secret verifies; after it, only the new one", () =>
    Effect.scoped(Effect.gen(function* () {
      const receiver = yield* startReceiver(() => ({ status: 200 }))
      const merchantId = yield* createMerchant
      const endpoints = yield* WebhookEndpoints
      const sender = yield* WebhookSender
      const sql = yield* SqlClient.SqlClient
      const { endpoint, secret: oldSecret } = yield* endpoints.create(merchantId, { url: receiver.url, event_types: ["*"] })
      const { secret: newSecret } = yield* endpoints.rotateSecret(merchantId, endpoint.id, 60_000)
      assert.notStrictEqual(newSecret, oldSecret)
      yield* enqueue(paymentEvent(merchantId, yield* newPaymentId, 1))
      yield* sender.drain(5)
      const [during] = receiver.received
      if (during === undefined) return assert.fail("nothing received")
      assert.strictEqual(during.signature.split(" ").length, 2)
      new Webhook(oldSecret).verify(during.body, headersOf(during))
      new Webhook(newSecret).verify(during.body, headersOf(during))
      // The overlap ends (as if its time had passed).
      yield* sql`UPDATE webhook_endpoint_secrets SET expires_at = created_at WHERE endpoint_id = ${endpoint.id} AND expires_at IS NOT NULL`
      yield* enqueue(paymentEvent(merchantId, yield* newPaymentId, 1))
      yield* sender.drain(5)
      const [, after] = receiver.received
      if (after === undefined) return assert.fail("nothing received after the overlap")
      assert.strictEqual(after.signature.split(" ").length, 1)
      new Webhook(newSecret).verify(after.body, headersOf(after))
      assert.throws(() => new Webhook(oldSecret).verify(after.body, headersOf(after)), WebhookVerificationError)
    })))

  it.effect("rotation keeps at most two secrets signing: a third rotation within the overlap stops the oldest; expires_in_ms 0 retires every older secret at once", () =>
    Effect.scoped(Effect.gen(function* () {
      const receiver = yield* startReceiver(() => ({ status: 200 }))
      const merchantId = yield* createMerchant
      const endpoints = yield* WebhookEndpoints
      const sender = yield* WebhookSender
      const { endpoint, secret: first } = yield* endpoints.create(merchantId, { url: receiver.url, event_types: ["*"] })
      const { secret: second } = yield* endpoints.rotateSecret(merchantId, endpoint.id, 3_600_000)
      const { secret: third } = yield* endpoints.rotateSecret(merchantId, endpoint.id, 3_600_000)
      for (let rotation = 0; rotation < 5; rotation++) yield* endpoints.rotateSecret(merchantId, endpoint.id, 3_600_000)
      const { secret: latest } = yield* endpoints.rotateSecret(merchantId, endpoint.id, 3_600_000)
      yield* enqueue(paymentEvent(merchantId, yield* newPaymentId, 1))
      yield* sender.drain(5)
      const [piled] = receiver.received
      if (piled === undefined) return assert.fail("nothing received")
      assert.strictEqual(piled.signature.split(" ").length, 2, "the new secret and the one it replaced, no more")
      new Webhook(latest).verify(piled.body, headersOf(piled))
      for (const retired of [first, second, third]) assert.throws(() => new Webhook(retired).verify(piled.body, headersOf(piled)), WebhookVerificationError)

      // expires_in_ms 0: only the new secret signs, at once.
      const { secret: only } = yield* endpoints.rotateSecret(merchantId, endpoint.id, 0)
      yield* enqueue(paymentEvent(merchantId, yield* newPaymentId, 1))
      yield* sender.drain(5)
      const [, alone] = receiver.received
      if (alone === undefined) return assert.fail("nothing received after the rotation with no overlap")
      assert.strictEqual(alone.signature.split(" ").length, 1)
      new Webhook(only).verify(alone.body, headersOf(alone))
      assert.throws(() => new Webhook(latest).verify(alone.body, headersOf(alone)), WebhookVerificationError)
    })))

  it.effect("raw SQL bypassing the code is refused by the database: duplicate delivery, changed bytes, other merchant's delivery, bad URL, a card number as description, bad secret, two current secrets, fewer attempts", () =>
    Effect.scoped(Effect.gen(function* () {
      const merchantId = yield* createMerchant
      const other = yield* createMerchant
      const endpoints = yield* WebhookEndpoints
      const sql = yield* SqlClient.SqlClient
      const { endpoint } = yield* endpoints.create(merchantId, { url: "https://merchant.example/", event_types: ["*"] })
      const event = paymentEvent(merchantId, yield* newPaymentId, 1)
      assert.strictEqual(yield* enqueue(event), 1)
      // Each refusal names the guard it attacks (constraint or trigger message): most guards share a
      // SQLSTATE, so the code alone would pass for any of them.
      const [stored] = yield* decodeRows(Schema.Struct({ body: Schema.String }))(sql`SELECT body FROM webhook_deliveries WHERE event_id = ${event.eventId}::uuid`)
      const body = stored?.body ?? ""
      yield* expectSqlRefusal(sql`
        INSERT INTO webhook_deliveries (id, endpoint_id, merchant_id, event_id, event_type, payment_id, payment_version, body)
        VALUES (gen_random_uuid(), ${endpoint.id}, ${merchantId}, ${event.eventId}::uuid, 'payment_created', ${event.event.payment_id}, 1, ${body})`,
        { code: "23505", constraint: "webhook_deliveries_once_per_endpoint_event" })
      // A body that is not the envelope of the row's own event (0102): another merchant's (the
      // outside attack sent merchant A's event to B's endpoint, signed with B's secret), another
      // event's, type's or payment's, not JSON. The same row with its own envelope is accepted.
      const insertWith = (eventId: string, text: string) => sql`
        INSERT INTO webhook_deliveries (id, endpoint_id, merchant_id, event_id, event_type, payment_id, payment_version, body)
        VALUES (gen_random_uuid(), ${endpoint.id}, ${merchantId}, ${eventId}::uuid, 'payment_created', ${event.event.payment_id}, 1, ${text})`
      const envelopeOf = (eventId: string) => body.replace(event.eventId, eventId)
      for (const forge of [
        (text: string) => text.replace(`"merchant_id":"${merchantId}"`, `"merchant_id":"${other}"`),
        (text: string) => text.replace(`"payment_id":"${event.event.payment_id}"`, `"payment_id":"pay_${"0".repeat(24)}"`),
        (text: string) => text.replace(`"type":"payment_created"`, `"type":"payment_settled"`),
        (text: string) => text.replace(`"version":1`, `"version":2`),
        // What the parsed form does not show (outside re-test): the sender sends the text as it is.
        (text: string) => `${text.slice(0, -1)},"leak":{"merchant_id":"${other}"}}`,
        (text: string) => text.replace(`"data":{`, `"data":{"merchant_id":"${other}"},"data":{`),
        (text: string) => text.replace(`"data":{`, `"data":{"amount_minor":1,`),
        (text: string) => text.replace(/"timestamp":"[^"]+"/, `"timestamp":"1999-01-01T00:00:00.000Z"`),
        (text: string) => text.replace(`"amount_minor":${event.event.amount_minor}`, `"amount_minor":${event.event.amount_minor}e0`),
        (text: string) => text.replace(`"version":1`, `"version":1.0`),
        (_: string) => envelopeOf(randomUUID()),
        (_: string) => "{}",
        (_: string) => "not json"
      ]) {
        const eventId = randomUUID()
        const forged = forge(envelopeOf(eventId))
        assert.notStrictEqual(forged, envelopeOf(eventId), "the forgery changes the body")
        yield* expectSqlRefusal(insertWith(eventId, forged),
          { code: "23000", message: /^webhook delivery .*: the body (is not the envelope of its own event|is not JSON|names a member twice|writes a number other than as a plain integer)/ })
      }
      const ownId = randomUUID()
      yield* insertWith(ownId, envelopeOf(ownId))
      const otherId = randomUUID()
      const otherMerchants = envelopeOf(otherId).replace(`"merchant_id":"${merchantId}"`, `"merchant_id":"${other}"`)
      yield* expectSqlRefusal(sql`UPDATE webhook_deliveries SET body = '{"forged":true}' WHERE event_id = ${event.eventId}::uuid`,
        { code: "23000", message: /is immutable: only its delivery state may change/ })
      // Its event type too (the API lists it): relabelled payment_failed by hand (outside re-test).
      yield* expectSqlRefusal(sql`UPDATE webhook_deliveries SET event_type = 'payment_failed' WHERE event_id = ${event.eventId}::uuid`,
        { code: "23000", message: /is immutable: only its delivery state may change/ })
      yield* expectSqlRefusal(sql`
        INSERT INTO webhook_deliveries (id, endpoint_id, merchant_id, event_id, event_type, payment_id, payment_version, body)
        VALUES (gen_random_uuid(), ${endpoint.id}, ${other}, ${otherId}::uuid, 'payment_created', ${event.event.payment_id}, 1, ${otherMerchants})`,
        { code: "23503", constraint: "webhook_deliveries_endpoint_merchant" })
      yield* expectSqlRefusal(sql`UPDATE webhook_endpoints SET url = 'file:///etc/passwd' WHERE id = ${endpoint.id}`,
        { code: "23514", constraint: "webhook_endpoints_url_check" })
      yield* expectSqlRefusal(sql`UPDATE webhook_endpoints SET description = 'card 4242 4242 4242 4242' WHERE id = ${endpoint.id}`,
        { code: "23514", constraint: "webhook_endpoints_no_card_data" })
      yield* expectSqlRefusal(sql`INSERT INTO webhook_endpoint_secrets (id, endpoint_id, secret) VALUES (gen_random_uuid(), ${endpoint.id}, 'hunter2')`,
        { code: "23514", constraint: "webhook_endpoint_secrets_secret_form" })
      yield* expectSqlRefusal(sql`INSERT INTO webhook_endpoint_secrets (id, endpoint_id, secret) VALUES (gen_random_uuid(), ${endpoint.id}, ${`whsec_${Buffer.alloc(32, 7).toString("base64")}`})`,
        { code: "23505", constraint: "webhook_endpoint_secrets_one_current" })
      yield* expectSqlRefusal(sql`UPDATE webhook_deliveries SET finished_at = clock_timestamp() WHERE event_id = ${event.eventId}::uuid`,
        { code: "23514", constraint: "webhook_deliveries_finished_iff_not_pending" })
      // The attempt history only grows: a delivery's attempts cannot be wound back (to hide
      // failed attempts, or to buy another round of retries outside a redelivery).
      yield* sql`UPDATE webhook_deliveries SET attempt_count = 2, round_attempt_count = 2 WHERE event_id = ${event.eventId}::uuid`
      yield* expectSqlRefusal(sql`UPDATE webhook_deliveries SET attempt_count = 1, round_attempt_count = 1 WHERE event_id = ${event.eventId}::uuid`,
        { code: "23000", message: /attempt_count never decreases/ })
    })))

  it.effect("pages: endpoints oldest first, deliveries newest first, each page after the given id; filters by event and status", () =>
    Effect.gen(function* () {
      const merchantId = yield* createMerchant
      const endpoints = yield* WebhookEndpoints
      const deliveries = yield* WebhookDeliveries
      const created = yield* Effect.forEach([1, 2, 3], (i) => endpoints.create(merchantId, { url: `https://merchant.example/${i}`, event_types: ["*"] }))
      const first = yield* endpoints.list(merchantId, { limit: 2 })
      assert.deepStrictEqual([first.data.map((e) => e.url), first.hasMore], [["https://merchant.example/1", "https://merchant.example/2"], true])
      const second = yield* endpoints.list(merchantId, { limit: 2, startingAfter: first.data[1]?.id })
      assert.deepStrictEqual([second.data.map((e) => e.url), second.hasMore], [["https://merchant.example/3"], false])

      const endpointId = created[0]?.endpoint.id ?? ""
      const events = yield* Effect.forEach([1, 2, 3], () => Effect.map(newPaymentId, (paymentId) => paymentEvent(merchantId, paymentId, 1)))
      for (const event of events) yield* enqueue(event)
      const page1 = yield* deliveries.list(merchantId, endpointId, { limit: 2 })
      assert.strictEqual(page1.hasMore, true)
      const page2 = yield* deliveries.list(merchantId, endpointId, { limit: 2, startingAfter: page1.data[1]?.id })
      const all = [...page1.data, ...page2.data].map((d) => d.event_id)
      assert.deepStrictEqual([...all].sort(), events.map((e) => e.eventId).sort(), "three pages' worth, each once")
      assert.strictEqual(page2.hasMore, false)
      const one = yield* deliveries.list(merchantId, endpointId, { limit: 10, eventId: events[1]?.eventId })
      assert.deepStrictEqual(one.data.map((d) => d.event_id), [events[1]?.eventId])
      assert.strictEqual((yield* deliveries.list(merchantId, endpointId, { limit: 10, status: "delivered" })).data.length, 0)
      const other = yield* createMerchant
      assert.isTrue(Exit.isFailure(yield* Effect.exit(deliveries.list(other, endpointId, { limit: 10 }))), "another merchant's endpoint: not found")
    }))
})
