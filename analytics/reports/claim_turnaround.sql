-- Claim turnaround by stage: from a claim's receipt to the first 277CA STC
-- about it from us (clearinghouse: the front-end edits), to its first
-- delivery to the payer in a batch (routed), and to the first payer 277CA
-- forwarded by the round trip (payer): claims and percentiles in
-- milliseconds.
WITH acks AS (
    SELECT tenant_id, claim_key, ack_source AS stage,
           min(received_at) AS received_at,
           min(acked_at) AS done_at
    FROM claim_ack
    WHERE received_at >= $from AND received_at < $to
      AND ($partner = '' OR tenant_id = $partner)
      AND acked_at IS NOT NULL
    GROUP BY 1, 2, 3
),
routes AS (
    SELECT tenant_id, claim_key, 'routed' AS stage,
           min(received_at) AS received_at,
           min(delivered_at) AS done_at
    FROM claim_route
    WHERE received_at >= $from AND received_at < $to
      AND ($partner = '' OR tenant_id = $partner)
      AND delivered_at IS NOT NULL
    GROUP BY 1, 2, 3
),
t AS (
    SELECT stage,
           CAST(date_part('epoch', done_at) * 1000 - date_part('epoch', received_at) * 1000 AS BIGINT) AS ms
    FROM (SELECT * FROM acks UNION ALL SELECT * FROM routes) AS s
)
SELECT stage,
       count(*) AS claims,
       approx_percentile_cont(ms, 0.5) AS p50_ms,
       approx_percentile_cont(ms, 0.9) AS p90_ms,
       approx_percentile_cont(ms, 0.99) AS p99_ms,
       max(ms) AS max_ms
FROM t
GROUP BY 1
ORDER BY 1
