# ---------------------------------------------------------- partner keys
#
# A KMS key of its own for each partner listed in var.partner_kms_keys.
# `clearway keys rotate --partner P --kms-key-id <alias>` makes the
# partner's next key version wrapped by it (and every later one); after
# `keys rewrap` and `keys destroy`, none of the partner's data opens
# without it. Deleting the key (removing the partner from the variable
# schedules the deletion, after var.partner_kms_deletion_window_days)
# erases the partner's data for good, backups included.

resource "aws_kms_key" "partner" {
  for_each                = var.partner_kms_keys
  description             = "${local.prefix}: key-encryption keys of partner ${each.key}"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = var.partner_kms_deletion_window_days
  policy                  = data.aws_iam_policy_document.partner_kms.json
}

resource "aws_kms_alias" "partner" {
  for_each = var.partner_kms_keys
  # Alias names take no ".": a partner id's dots become "_".
  name          = "alias/${local.prefix}-partner-${replace(each.key, ".", "_")}"
  target_key_id = aws_kms_key.partner[each.key].key_id
}

data "aws_iam_policy_document" "partner_kms" {
  # checkov:skip=CKV_AWS_111: A key policy's "*" resource is the key itself, and the account-root statement is what lets IAM policies (the per-role grants in iam.tf) apply to the key at all.
  # checkov:skip=CKV_AWS_356: As above: in a key policy "*" means this key only.
  # checkov:skip=CKV_AWS_109: As above: the account-root statement delegates the key's administration to IAM, where it is least-privilege.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${local.account_id}:root"]
    }
  }
}
