-- 999 error Pareto: segment errors (IK304) and element errors (IK403) by
-- segment and loop, most frequent first.
SELECT st01,
       ik304_code AS segment_code,
       coalesce(ik403_code, '') AS element_code,
       ik301_segment_id AS segment,
       coalesce(ik303_loop_id, '') AS loop_id,
       count(*) AS errors,
       count(DISTINCT transaction_id) AS transactions
FROM ack_error
WHERE received_at >= $from AND received_at < $to
  AND ($partner = '' OR tenant_id = $partner)
GROUP BY 1, 2, 3, 4, 5
ORDER BY errors DESC, 1, 2, 3, 4, 5
