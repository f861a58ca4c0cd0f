-- 0080 pinned luhn_valid's search_path to `pg_catalog, pg_temp`, every other function of ours to
-- `pg_catalog, public, pg_temp` (the form packages/ledger/test/attacks.test.ts holds every function
-- to). The function names nothing outside pg_catalog either way; pinned like the rest, so the one
-- check covers it. A migration of its own: 0080 is applied where it ran, and is not edited.
ALTER FUNCTION luhn_valid(text) SET search_path = pg_catalog, public, pg_temp;
