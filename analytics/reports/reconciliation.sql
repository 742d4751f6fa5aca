-- 835 reconciliation by submitter and payer: claims accepted at the front
-- end, those an 835 received answered (matched on the patient control
-- number's token and the charge, CLP03 = CLM02, within the tenant),
-- charged and paid, denied (CLP02 4),
-- and outstanding (no 835 yet). The 835s counted are those submitted to
-- intake by the same tenant and payers' 835s forwarded to it by the round
-- trip.
WITH c AS (
    SELECT tenant_id, coalesce(payer_id, '') AS payer, pcn_token, total_charge
    FROM claim
    WHERE received_at >= $from AND received_at < $to
      AND status = 'accepted'
      AND ($partner = '' OR tenant_id = $partner)
      AND ($payer = '' OR payer_id = $payer)
),
r AS (
    SELECT tenant_id, clp01_pcn_token AS pcn, clp03_charge AS charge, sum(clp04_paid) AS paid,
           sum(coalesce(clp05_patient_resp, 0)) AS patient_resp,
           max(CASE WHEN clp02_status = '4' THEN 1 ELSE 0 END) AS denied
    FROM remit_claim
    GROUP BY 1, 2, 3
)
SELECT c.tenant_id AS submitter,
       c.payer,
       count(*) AS claims,
       count(r.pcn) AS answered,
       count(*) - count(r.pcn) AS outstanding,
       sum(coalesce(r.denied, 0)) AS denied,
       sum(c.total_charge) AS charged,
       sum(coalesce(r.paid, 0)) AS paid,
       sum(coalesce(r.patient_resp, 0)) AS patient_responsibility
FROM c LEFT JOIN r ON c.tenant_id = r.tenant_id AND c.pcn_token = r.pcn AND c.total_charge = r.charge
GROUP BY 1, 2
ORDER BY 1, 2
