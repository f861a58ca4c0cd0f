-- 0076's NOT VALID CHECK (`payments_payment_method_no_grouped_digits`: no 12 digits with only `_`
-- between them) is dropped. A CHECK runs on every UPDATE of a row, whatever the UPDATE sets, and
-- NOT VALID only spares the rows at the time of the ALTER: a payment stored before 0076 with such a
-- token (`pm_4242_4242_4242_4242`) could no longer be authorized, captured, canceled or expired
-- (every status change failed with 23514, a 500 to the merchant, and the completer retried it to
-- parking). 0080's trigger `payments_card_data_refused` refuses a superset of the same tokens (12+
-- digits with only separators between them, and grouped card numbers) on every INSERT and on every
-- UPDATE that sets `payment_method`, and never on a status change: the rule keeps its database
-- enforcement without the trap. The valid CHECK of migration 0003 (no 12 consecutive digits) stays.
-- The triggers' SHARE ROW EXCLUSIVE locks (0084: ACCESS EXCLUSIVE) wait behind any open
-- transaction on the tables, and every later statement on them would queue behind that wait while
-- other instances serve: bounded, the start-up fails (and is retried) instead of stalling them.
SET LOCAL lock_timeout = '5s';

ALTER TABLE payments DROP CONSTRAINT payments_payment_method_no_grouped_digits;
