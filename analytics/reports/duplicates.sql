-- Duplicates by submitter, day and layer: submissions answered as a
-- duplicate of an earlier transaction instead of being processed again,
-- by the layer that caught them (idempotency-key, interchange = ISA13,
-- message = MSH-10, content = the same bytes), with their format and
-- channel, the distinct transactions they repeated, and their bytes.
SELECT tenant_id AS submitter,
       CAST(date_trunc('day', received_at) AS DATE) AS day,
       layer,
       format,
       channel,
       count(*) AS duplicates,
       count(DISTINCT original_transaction_id) AS originals,
       sum(payload_bytes) AS bytes
FROM duplicate
WHERE received_at >= $from AND received_at < $to
  AND ($partner = '' OR tenant_id = $partner)
GROUP BY 1, 2, 3, 4, 5
ORDER BY 1, 2, 3, 4, 5
