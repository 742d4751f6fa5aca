output "https_endpoint" {
  description = "Where partners submit (HTTPS)."
  value       = "https://${aws_lb.http.dns_name}"
}

output "mllp_endpoint" {
  description = "Where HL7 v2 senders connect (MLLP over TLS)."
  value       = "${aws_lb.mllp.dns_name}:2575"
}

output "backend_settings" {
  description = "The backend.* settings the tasks run with (for operator commands: `clearway partners --backend aws`)."
  value = {
    bucket            = aws_s3_bucket.payloads.id
    queue             = aws_sqs_queue.work.url
    dead_letter_queue = aws_sqs_queue.dead_letters.url
    topic             = aws_sns_topic.acks.arn
    table             = aws_dynamodb_table.state.name
    kms_key_id        = aws_kms_key.data.arn
    audit_table       = aws_dynamodb_table.audit.name
    audit_bucket      = aws_s3_bucket.audit_checkpoints.id
  }
}

output "audit_key_secret" {
  description = "Put the audit signing key here before the first deploy (the contents of an audit key file: `clearway audit key` makes one beside a data directory); auditors keep the verifier key it prints."
  value       = aws_secretsmanager_secret.audit_key.arn
}

output "master_key_secret" {
  description = "Put the 64-hex-digit master key here before the first deploy."
  value       = aws_secretsmanager_secret.master_key.arn
}

output "partner_kms_keys" {
  description = "Each partner in partner_kms_keys with the alias of its KMS key (for `clearway keys rotate --kms-key-id`)."
  value       = { for p, a in aws_kms_alias.partner : p => a.name }
}
