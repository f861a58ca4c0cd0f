/**
 * The layering rule of docs/architecture.md, checked on every import (docs/adr/0004). Run by
 * scripts/test.sh: `pnpm exec depcruise --config .dependency-cruiser.cjs packages`.
 *
 * `layers` is the one statement of the rule: the packages each package's `src` may import
 * (besides itself). Its tests may also import what those packages may import (a test lives in the
 * package whose highest layer it exercises), the testkit, and other packages' exported test
 * support (`@pay/domain/test-support`, `@pay/settlement/test-support`) — always by package name.
 */
const layers = {
  domain: [],
  infra: [],
  // Operators' failure drills (pnpm scenario / pnpm chaos): real processes over HTTP and SQL, the testkit's throwaway instances.
  scenarios: ["domain", "infra", "merchants", "testkit"],
  ledger: ["domain", "infra"],
  outbox: ["domain", "infra"],
  consumers: ["domain", "infra", "outbox", "webhooks"],
  merchants: ["domain", "infra"],
  acquirer: ["domain", "infra"],
  idempotency: ["domain", "infra"],
  settlement: ["domain", "infra", "ledger"],
  payments: ["domain", "infra", "outbox", "acquirer", "settlement", "idempotency", "merchants"],
  webhooks: ["domain", "infra"],
  api: ["domain"],
  server: ["domain", "infra", "ledger", "outbox", "consumers", "merchants", "acquirer", "idempotency", "settlement", "payments", "webhooks", "api"],
  cli: ["domain", "infra", "merchants", "settlement", "idempotency", "outbox", "consumers", "webhooks"],
  testkit: ["infra"]
}

/** Everything reachable from a package's allowed imports (what its tests may use). */
const closure = (name, seen = new Set()) => {
  for (const next of layers[name]) {
    if (!seen.has(next)) {
      seen.add(next)
      closure(next, seen)
    }
  }
  return seen
}

const alternatives = (names) => `(${[...names].join("|")})`

const layerRules = Object.keys(layers).flatMap((name) => {
  const own = [name, ...layers[name]]
  const forTests = new Set([name, ...closure(name), "testkit"])
  return [
    {
      name: `${name}-imports-only-its-layers`,
      comment: `packages/${name}/src may import only ${layers[name].join(", ") || "effect and node"} (docs/architecture.md)`,
      severity: "error",
      from: { path: `^packages/${name}/src/` },
      to: { path: "^packages/", pathNot: `^packages/${alternatives(own)}/src/` }
    },
    {
      name: `${name}-tests-import-only-below`,
      comment: `packages/${name}/test may import its own package, what it may import (transitively), the testkit and exported test support`,
      severity: "error",
      from: { path: `^packages/${name}/test/` },
      to: { path: "^packages/", pathNot: `^packages/(${name}/|${alternatives(forTests)}/src/|${alternatives(forTests)}/test/support/|domain/test/fixtures\\.ts)` }
    }
  ]
})

module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: "no-relative-imports-across-packages",
      comment: "another package is imported by its name (@pay/...), never by a path into its folder",
      severity: "error",
      from: { path: "^packages/([^/]+)/" },
      to: { dependencyTypes: ["local"], path: "^packages/", pathNot: "^packages/$1/" }
    },
    {
      name: "src-never-imports-tests",
      severity: "error",
      from: { path: "^packages/[^/]+/src/" },
      to: { path: "^packages/[^/]+/test/" }
    },
    {
      name: "no-circular",
      comment: "no import cycles, within a package or across packages",
      severity: "error",
      from: {},
      to: { circular: true }
    },
    {
      name: "not-to-unresolvable",
      severity: "error",
      from: {},
      to: { couldNotResolve: true }
    }
  ],
  options: {
    // TypeScript 7 has no JavaScript compiler API; swc parses the sources (docs/adr/0004).
    parser: "swc",
    tsConfig: { fileName: "tsconfig.json" },
    doNotFollow: { path: "node_modules" },
    exclude: { path: "node_modules" },
    // Workspace packages are resolved through their package.json `exports` to their sources.
    enhancedResolveOptions: {
      exportsFields: ["exports"],
      conditionNames: ["import", "require", "node", "default"],
      extensions: [".ts", ".js"]
    },
    skipAnalysisNotInRules: true
  }
}
