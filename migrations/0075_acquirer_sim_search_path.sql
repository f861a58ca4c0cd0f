-- Every function pins its search_path (docs/security.md, rules for every migration, rule 1):
-- acquirer_sim.locked_approval (0073) did not. It is not SECURITY DEFINER and names its tables
-- with their schema, so nothing could be hijacked through it; the rule holds for every schema
-- now, and packages/ledger/test/attacks.test.ts lists the functions of every schema we own, not
-- only public's.
ALTER FUNCTION acquirer_sim.locked_approval(text) SET search_path = pg_catalog, public, pg_temp;
