import type { Scenario } from "./Scenario.ts"
import { dependencyScenarios } from "./scenarios/Dependencies.ts"
import { eventScenarios } from "./scenarios/Events.ts"
import { faultScenarios } from "./scenarios/Faults.ts"
import { concurrentDuplicateRequest, doubleSettleStorm, invalidTransition, rawSqlLedgerBreak } from "./scenarios/Phases.ts"
import { webhookSecretsKeyMissing } from "./scenarios/WebhookSecrets.ts"

/** Every scenario `pnpm scenario` knows, in the order a newcomer should run them. */
export const scenarios: ReadonlyArray<Scenario> = [
  doubleSettleStorm,
  rawSqlLedgerBreak,
  invalidTransition,
  concurrentDuplicateRequest,
  ...faultScenarios,
  ...dependencyScenarios,
  ...eventScenarios,
  webhookSecretsKeyMissing
]

export const findScenario = (name: string): Scenario | undefined => scenarios.find((scenario) => scenario.name === name)
