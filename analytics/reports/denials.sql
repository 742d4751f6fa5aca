-- Denials and adjustments by payer, CARC group and reason code, over the
-- 835s received in the period: for each code, the claims it adjusted (at
-- claim or line level), those of them the payer denied (CLP02 4), its
-- adjustments and amount, the payer's claims remitted in the period and the
-- code's share of them.
WITH rc AS (
    SELECT remit_key, coalesce(payer_id, '') AS payer, clp02_status
    FROM remit_claim
    WHERE received_at >= $from AND received_at < $to
      AND ($partner = '' OR tenant_id = $partner)
      AND ($payer = '' OR payer_id = $payer)
),
totals AS (
    SELECT payer, count(*) AS remitted
    FROM rc
    GROUP BY 1
),
adj AS (
    SELECT rc.payer, rc.remit_key, rc.clp02_status, a.group_code, a.reason_code, a.amount
    FROM remit_adjustment a JOIN rc ON a.remit_key = rc.remit_key
)
SELECT adj.payer AS payer_id,
       adj.group_code,
       adj.reason_code,
       count(DISTINCT adj.remit_key) AS claims,
       count(DISTINCT CASE WHEN adj.clp02_status = '4' THEN adj.remit_key END) AS denied_claims,
       count(*) AS adjustments,
       sum(adj.amount) AS amount,
       t.remitted AS remitted_claims,
       round(CAST(count(DISTINCT adj.remit_key) AS DOUBLE) / t.remitted, 4) AS claim_share
FROM adj JOIN totals t ON adj.payer = t.payer
GROUP BY adj.payer, adj.group_code, adj.reason_code, t.remitted
ORDER BY adj.payer, amount DESC, adj.group_code, adj.reason_code
