-- Claim turnaround by answer source: from a claim's receipt to the 277CA
-- STCs about it, ours (clearinghouse: the front-end edits) and the
-- payer's (forwarded by the round trip): claims answered and percentiles
-- in milliseconds of the first answer's time.
WITH firsts AS (
    SELECT tenant_id, claim_key, ack_source,
           min(received_at) AS received_at,
           min(acked_at) AS acked_at
    FROM claim_ack
    WHERE received_at >= $from AND received_at < $to
      AND ($partner = '' OR tenant_id = $partner)
      AND acked_at IS NOT NULL
    GROUP BY 1, 2, 3
),
t AS (
    SELECT ack_source,
           CAST(date_part('epoch', acked_at) * 1000 - date_part('epoch', received_at) * 1000 AS BIGINT) AS ms
    FROM firsts
)
SELECT ack_source,
       count(*) AS claims,
       approx_percentile_cont(ms, 0.5) AS p50_ms,
       approx_percentile_cont(ms, 0.9) AS p90_ms,
       approx_percentile_cont(ms, 0.99) AS p99_ms,
       max(ms) AS max_ms
FROM t
GROUP BY 1
ORDER BY 1
