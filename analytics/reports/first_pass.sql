-- First-pass claim acceptance (front end) by submitter and payer: claims in
-- accepted transaction sets whose 277CA (ours) accepted them (STC01-1 A1/A2),
-- with the charges on each side.
SELECT tenant_id AS submitter,
       coalesce(payer_id, '') AS payer,
       count(*) AS claims,
       sum(CASE WHEN status = 'accepted' THEN 1 ELSE 0 END) AS accepted,
       sum(CASE WHEN status = 'rejected' THEN 1 ELSE 0 END) AS rejected,
       round(100.0 * sum(CASE WHEN status = 'accepted' THEN 1 ELSE 0 END) / count(*), 2) AS accepted_pct,
       sum(total_charge) AS charged,
       sum(CASE WHEN status = 'rejected' THEN total_charge ELSE 0 END) AS charged_rejected
FROM claim
WHERE received_at >= $from AND received_at < $to
  AND ($partner = '' OR tenant_id = $partner)
  AND ($payer = '' OR payer_id = $payer)
GROUP BY 1, 2
ORDER BY 1, 2
