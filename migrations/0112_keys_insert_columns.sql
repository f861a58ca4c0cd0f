-- pay_keys inserts a key's identity only (outside review of 0109, 2026-12-05, F3). With INSERT on
-- every column it could write `created_at` ('infinity', 2999): the key authenticated, and `pnpm cli
-- keys revoke` failed on api_keys_revoked_after_created for ever (the revocation instant must follow
-- the creation), so the key could not be revoked by the tool an operator reaches for; it could also
-- backdate a key or write `revoked_at` at insert. ApiKeys.create writes these four columns; the
-- creation instant is the database's (the column default), the revocation the UPDATE's.

REVOKE INSERT ON api_keys FROM pay_keys;
GRANT INSERT (id, merchant_id, key_hash, prefix) ON api_keys TO pay_keys;
