# One role per process role, each allowed only what that role does:
#
# - intake (HTTP, MLLP and the fast path): stores payloads and sends
#   pointers, but cannot read a payload back; reads and writes state
#   (records, dedupe keys, the outbox, coverage for eligibility answers).
# - worker: reads payloads (never writes them), receives, extends and
#   deletes queue messages, sends re-queued pointers (outbox sweeper,
#   dead-letter replay), publishes acknowledgements, reads and writes
#   state.
#
# Neither may delete the table, the bucket or the queues, or change keys.

data "aws_iam_policy_document" "tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

locals {
  state_read  = ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:ConditionCheckItem"]
  state_write = ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]
}

data "aws_iam_policy_document" "intake" {
  statement {
    sid = "PayloadsWriteOnly"
    # DeleteObject: a commit refused by a condition (a duplicate) removes
    # the payload it had just stored. No GetObject.
    actions   = ["s3:PutObject", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.payloads.arn}/*"]
  }
  statement {
    sid       = "QueueSend"
    actions   = ["sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.work.arn]
  }
  statement {
    sid       = "State"
    actions   = concat(local.state_read, local.state_write)
    resources = [aws_dynamodb_table.state.arn]
  }
  statement {
    sid = "AuditAppend"
    # The audit log: appends (conditional puts in transactions), reads for
    # proofs and search. No DeleteItem: events are never removed.
    # (The state store writes every put as an Update in TransactWriteItems.)
    actions   = ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"]
    resources = [aws_dynamodb_table.audit.arn]
  }
  statement {
    sid = "AuditCheckpoints"
    # Checkpoints are written under Object Lock; nothing may delete them.
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.audit_checkpoints.arn}/*"]
  }
  statement {
    sid       = "Encrypt"
    actions   = ["kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt"]
    resources = [aws_kms_key.data.arn]
    # Decrypt is needed for the encrypted table and queue attributes, not
    # for payloads: S3 reads are not granted at all.
  }
  # Partners with KMS keys of their own: unwrapping their key versions.
  dynamic "statement" {
    for_each = length(aws_kms_key.partner) > 0 ? [1] : []
    content {
      sid       = "PartnerKeys"
      actions   = ["kms:Decrypt"]
      resources = [for k in aws_kms_key.partner : k.arn]
    }
  }
}

data "aws_iam_policy_document" "worker" {
  statement {
    sid       = "PayloadsReadOnly"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.payloads.arn}/*"]
  }
  statement {
    sid = "QueueConsume"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:SendMessage",
      "sqs:GetQueueUrl",
      "sqs:GetQueueAttributes",
    ]
    resources = [aws_sqs_queue.work.arn]
  }
  statement {
    sid       = "Publish"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.acks.arn]
  }
  statement {
    sid       = "State"
    actions   = concat(local.state_read, local.state_write)
    resources = [aws_dynamodb_table.state.arn]
  }
  statement {
    sid       = "Decrypt"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.data.arn]
  }
  # The scheduled analytics export (analytics.export_every_secs): create-only
  # puts of Parquet files (reads for DataFusion's reports), no deletes.
  statement {
    sid       = "AnalyticsExport"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = ["${aws_s3_bucket.analytics.arn}/clearway/*"]
  }
  statement {
    sid       = "AnalyticsList"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.analytics.arn]
  }
  dynamic "statement" {
    for_each = length(aws_kms_key.partner) > 0 ? [1] : []
    content {
      sid       = "PartnerKeys"
      actions   = ["kms:Decrypt"]
      resources = [for k in aws_kms_key.partner : k.arn]
    }
  }
}

resource "aws_iam_role" "intake" {
  name               = "${local.prefix}-intake"
  assume_role_policy = data.aws_iam_policy_document.tasks_assume.json
}

resource "aws_iam_role_policy" "intake" {
  name   = "intake"
  role   = aws_iam_role.intake.id
  policy = data.aws_iam_policy_document.intake.json
}

resource "aws_iam_role" "worker" {
  name               = "${local.prefix}-worker"
  assume_role_policy = data.aws_iam_policy_document.tasks_assume.json
}

resource "aws_iam_role_policy" "worker" {
  name   = "worker"
  role   = aws_iam_role.worker.id
  policy = data.aws_iam_policy_document.worker.json
}

# ECS itself (pulling the image, writing logs, reading the master key
# secret into the container's environment).
resource "aws_iam_role" "execution" {
  name               = "${local.prefix}-execution"
  assume_role_policy = data.aws_iam_policy_document.tasks_assume.json
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "RegistryLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # the action has no resource to restrict it to
  }
  statement {
    sid       = "Image"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
    resources = [var.image_repository_arn]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.services.arn}:*"]
  }
  statement {
    sid       = "MasterKey"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.master_key.arn, aws_secretsmanager_secret.audit_key.arn]
  }
  statement {
    sid       = "MasterKeyDecrypt"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.data.arn]
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "execution"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}
