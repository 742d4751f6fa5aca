-- TA1/999 syntax acceptance by submitter and day: the share of transaction
-- sets whose 999 accepted them (IK5-01 A or E).
SELECT tenant_id AS submitter,
       CAST(date_trunc('day', received_at) AS DATE) AS day,
       count(*) AS sets,
       sum(CASE WHEN ack_999_code IN ('A', 'E') THEN 1 ELSE 0 END) AS accepted,
       sum(CASE WHEN ack_999_code IN ('R', 'M', 'W', 'X') THEN 1 ELSE 0 END) AS rejected,
       round(100.0 * sum(CASE WHEN ack_999_code IN ('A', 'E') THEN 1 ELSE 0 END) / count(*), 2) AS accepted_pct
FROM transaction_set
WHERE received_at >= $from AND received_at < $to
  AND ($partner = '' OR tenant_id = $partner)
GROUP BY 1, 2
ORDER BY 1, 2
