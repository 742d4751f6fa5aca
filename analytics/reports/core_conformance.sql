-- CAQH CORE real-time conformance per calendar month, transaction and
-- payer: the share of answers (271/277, or the 999/TA1 that rejected the
-- request) returned within 20 seconds, against the 90 % rule (Phase I CORE
-- 156 and 250), with latency percentiles and how often the cache answered.
SELECT CAST(date_trunc('month', received_at) AS DATE) AS month,
       txn,
       coalesce(payer_id, '') AS payer,
       count(*) AS responses,
       sum(CASE WHEN within_20s THEN 1 ELSE 0 END) AS within_20s,
       round(100.0 * sum(CASE WHEN within_20s THEN 1 ELSE 0 END) / count(*), 2) AS within_20s_pct,
       100.0 * sum(CASE WHEN within_20s THEN 1 ELSE 0 END) / count(*) >= 90.0 AS conformant,
       approx_percentile_cont(latency_ms, 0.5) AS p50_ms,
       approx_percentile_cont(latency_ms, 0.99) AS p99_ms,
       max(latency_ms) AS max_ms,
       round(100.0 * sum(CASE WHEN served IN ('cache', 'memo') THEN 1 ELSE 0 END) / count(*), 2) AS cache_hit_pct
FROM rt_exchange
WHERE received_at >= $from AND received_at < $to
  AND ($partner = '' OR tenant_id = $partner)
  AND ($payer = '' OR payer_id = $payer)
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
