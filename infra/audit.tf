# The audit trail, apart from the data: its own DynamoDB table (the RFC 6962
# log: events, subtree hashes, signed checkpoints) and a bucket under
# S3 Object Lock in COMPLIANCE mode where every checkpoint is also written.
# Nobody (not the service, not an administrator, not the account's root) can
# delete or shorten a locked checkpoint before its retention ends, so a
# rewritten log fails `clearway audit verify` against them.

resource "aws_dynamodb_table" "audit" {
  name         = "${local.prefix}-audit"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"
  range_key    = "sk"

  attribute {
    name = "pk"
    type = "S"
  }
  attribute {
    name = "sk"
    type = "S"
  }
  point_in_time_recovery {
    enabled = true
  }
  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.data.arn
  }
  deletion_protection_enabled = true
}

resource "aws_s3_bucket" "audit_checkpoints" {
  bucket              = "${local.prefix}-audit-checkpoints"
  object_lock_enabled = true
  # checkov:skip=CKV_AWS_144: Checkpoints are small signed notes; auditors and partners keep their own copies (GET /v1/audit/checkpoint), which is the independent copy that matters.
  # checkov:skip=CKV2_AWS_62: Nothing consumes checkpoint object events.
  # checkov:skip=CKV2_AWS_61: Locked checkpoints are kept for the whole retention; a lifecycle rule could only expire them after it, which is the operator's decision.
}

resource "aws_s3_bucket_versioning" "audit_checkpoints" {
  bucket = aws_s3_bucket.audit_checkpoints.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_object_lock_configuration" "audit_checkpoints" {
  bucket = aws_s3_bucket.audit_checkpoints.id
  rule {
    default_retention {
      mode = "COMPLIANCE"
      days = var.audit_retention_days
    }
  }
  depends_on = [aws_s3_bucket_versioning.audit_checkpoints]
}

resource "aws_s3_bucket_server_side_encryption_configuration" "audit_checkpoints" {
  bucket = aws_s3_bucket.audit_checkpoints.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.data.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "audit_checkpoints" {
  bucket                  = aws_s3_bucket.audit_checkpoints.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "audit_checkpoints" {
  bucket = aws_s3_bucket.audit_checkpoints.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

data "aws_iam_policy_document" "audit_checkpoints" {
  statement {
    sid     = "TlsOnly"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.audit_checkpoints.arn,
      "${aws_s3_bucket.audit_checkpoints.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "audit_checkpoints" {
  bucket = aws_s3_bucket.audit_checkpoints.id
  policy = data.aws_iam_policy_document.audit_checkpoints.json
}

resource "aws_s3_bucket_logging" "audit_checkpoints" {
  bucket        = aws_s3_bucket.audit_checkpoints.id
  target_bucket = aws_s3_bucket.access_logs.id
  target_prefix = "s3/audit-checkpoints/"
}

# The key that signs checkpoints (`security.audit_key`: the log's origin and
# an Ed25519 seed, as `clearway audit key --new` prints them), shared by
# every intake task so that all their checkpoints verify with one verifier
# key. Like the master key, Terraform creates the secret, not its value.
resource "aws_secretsmanager_secret" "audit_key" {
  name       = "${local.prefix}/audit-key"
  kms_key_id = aws_kms_key.data.arn
  # checkov:skip=CKV2_AWS_57: Rotating the signing key is a planned change of the verifier key auditors hold, not a timer.
}
