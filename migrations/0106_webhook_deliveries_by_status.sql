-- An endpoint's deliveries listed by status (`GET /v1/webhook_endpoints/{id}/deliveries?status=`,
-- newest first: Deliveries.ts `list`) read every delivery the endpoint ever had: the only index was
-- (endpoint_id, created_at), without the status. An outside review on an endpoint with 10^6
-- deliveries and 3 failed: 0.6-1.0 s per request, a parallel scan of the table; ten at once from
-- one merchant hit the 10 s database bound (503) and slowed another merchant's list ten-fold.
-- This index answers the filter in the list's order (created_at, id descending), a page at a time.
-- `status` already blocked HOT updates (it is the predicate of 0030's partial indexes), so the
-- sender's status changes cost one more index entry each, not a new kind of write.
CREATE INDEX webhook_deliveries_endpoint_status ON webhook_deliveries (endpoint_id, status, created_at DESC, id DESC);
