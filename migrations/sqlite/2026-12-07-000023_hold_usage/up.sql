-- What each open lease has recorded so far, kept as a running total per hold instead of being
-- summed from usage_records through an index on hold_id (docs/ARCHITECTURE.md, "Batching").
-- That index took a leaf page per lease in every usage batch (about half of the write-ahead
-- log's traffic under load); this table holds one small row per open lease, which the usage
-- writer adds to in the batch's transaction and the lease's close reads and removes.
CREATE TABLE hold_usage (
    hold_id TEXT PRIMARY KEY NOT NULL REFERENCES transfers (id),
    cost BIGINT NOT NULL,
    requests BIGINT NOT NULL
) WITHOUT ROWID;

-- Leases still open carry their recorded usage over.
INSERT INTO hold_usage (hold_id, cost, requests)
SELECT u.hold_id, SUM(u.cost), COUNT(*)
FROM usage_records u
WHERE u.post_id IS NULL
  AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = u.hold_id)
GROUP BY u.hold_id;

DROP INDEX usage_records_hold;
