-- Turnaround from receipt to processed (every acknowledgement stored and
-- published) by format: percentiles in milliseconds.
SELECT format,
       count(*) AS transactions,
       approx_percentile_cont(latency_ms, 0.5) AS p50_ms,
       approx_percentile_cont(latency_ms, 0.9) AS p90_ms,
       approx_percentile_cont(latency_ms, 0.99) AS p99_ms,
       max(latency_ms) AS max_ms
FROM "transaction"
WHERE received_at >= $from AND received_at < $to
  AND ($partner = '' OR tenant_id = $partner)
GROUP BY 1
ORDER BY 1
