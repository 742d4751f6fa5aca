-- Real-time AAA errors by payer and code: the share of 271/277 answers that
-- carry each (loop and AAA03, e.g. 2100C:72 invalid member id, 2100A:42
-- unable to respond now), and how many answers there were.
WITH answers AS (
    SELECT coalesce(payer_id, '') AS payer, aaa_codes
    FROM rt_exchange
    WHERE received_at >= $from AND received_at < $to
      AND response_kind IN ('271', '277')
      AND ($partner = '' OR tenant_id = $partner)
      AND ($payer = '' OR payer_id = $payer)
),
totals AS (SELECT payer, count(*) AS answers FROM answers GROUP BY payer),
-- An answer's codes are comma-separated; the first four of each count.
codes AS (
    SELECT payer, split_part(aaa_codes, ',', 1) AS code FROM answers WHERE aaa_codes IS NOT NULL
    UNION ALL
    SELECT payer, split_part(aaa_codes, ',', 2) FROM answers WHERE aaa_codes IS NOT NULL
    UNION ALL
    SELECT payer, split_part(aaa_codes, ',', 3) FROM answers WHERE aaa_codes IS NOT NULL
    UNION ALL
    SELECT payer, split_part(aaa_codes, ',', 4) FROM answers WHERE aaa_codes IS NOT NULL
)
SELECT c.payer,
       c.code,
       count(*) AS occurrences,
       t.answers,
       round(100.0 * count(*) / t.answers, 2) AS per_100_answers
FROM codes c JOIN totals t ON c.payer = t.payer
WHERE c.code <> ''
GROUP BY c.payer, c.code, t.answers
ORDER BY occurrences DESC, c.payer, c.code
