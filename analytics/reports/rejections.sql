-- Rejection Pareto by 277CA status (category, status code, entity), claim and
-- line level, by source (clearinghouse: our front-end edits; payer: the
-- payers' 277CAs forwarded by the round trip), most frequent first.
SELECT ack_source AS source,
       stc01_1_category AS category,
       stc01_2_status AS status,
       coalesce(stc01_3_entity, '') AS entity,
       CASE WHEN line_number IS NULL THEN 'claim' ELSE 'line' END AS level,
       count(*) AS statuses,
       count(DISTINCT claim_key) AS claims,
       round(100.0 * count(*) / sum(count(*)) OVER (PARTITION BY ack_source), 2) AS share_pct
FROM claim_ack
WHERE received_at >= $from AND received_at < $to
  AND stc01_1_category NOT IN ('A1', 'A2')
  AND ($partner = '' OR tenant_id = $partner)
GROUP BY 1, 2, 3, 4, 5
ORDER BY 1, statuses DESC, 2, 3, 4, 5
