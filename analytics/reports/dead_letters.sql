-- Dead letters by format and reason: how many, the oldest and newest.
SELECT format,
       reason,
       count(*) AS dead_letters,
       min(dead_lettered_at) AS first_seen,
       max(dead_lettered_at) AS last_seen,
       max(attempts) AS max_attempts
FROM dead_letter
WHERE received_at >= $from AND received_at < $to
  AND ($partner = '' OR tenant_id = $partner)
GROUP BY 1, 2
ORDER BY dead_letters DESC, 1, 2
