-- `outcome` filters (e.g. every denied action, newest first) walk this index in seq order
-- instead of sorting all of a tenant's matching rows.
CREATE INDEX events_outcome_idx ON events (tenant_id, outcome, seq);
