# One customer-managed key for PHI at rest (payloads, queue, topic, table,
# secrets, logs), rotated yearly. Clearway also seals every state value and
# payload with its own master key before it reaches AWS; this key is the
# second layer.

locals {
  prefix     = "${var.name}-${var.environment}"
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
}

data "aws_iam_policy_document" "kms" {
  # checkov:skip=CKV_AWS_111: A key policy's "*" resource is the key itself, and the account-root statement is what lets IAM policies (the per-role grants in iam.tf) apply to the key at all.
  # checkov:skip=CKV_AWS_356: As above: in a key policy "*" means this key only.
  # checkov:skip=CKV_AWS_109: As above: the account-root statement delegates the key's administration to IAM, where it is least-privilege.
  # The account administers the key (through IAM policies).
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${local.account_id}:root"]
    }
  }
  # CloudWatch Logs encrypts the services' log groups with it.
  statement {
    sid       = "CloudWatchLogs"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${data.aws_partition.current.partition}:logs:${local.region}:${local.account_id}:log-group:/clearway/*"]
    }
  }
  # CloudWatch alarms publish to the encrypted alarm topic.
  statement {
    sid       = "CloudWatchAlarms"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
  }
}

resource "aws_kms_key" "data" {
  description             = "${local.prefix}: PHI at rest"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "data" {
  name          = "alias/${local.prefix}-data"
  target_key_id = aws_kms_key.data.key_id
}
