-- Throughput per channel and hour: transactions, bytes, outcomes.
SELECT channel,
       format,
       date_trunc('hour', received_at) AS hour,
       count(*) AS transactions,
       sum(payload_bytes) AS bytes,
       sum(CASE WHEN status = 'accepted' THEN 1 ELSE 0 END) AS accepted,
       sum(CASE WHEN status = 'rejected' THEN 1 ELSE 0 END) AS rejected,
       sum(claim_count) AS claims
FROM "transaction"
WHERE received_at >= $from AND received_at < $to
  AND ($partner = '' OR tenant_id = $partner)
GROUP BY 1, 2, 3
ORDER BY 3, 1, 2
