#!/usr/bin/env python3
"""Writes infra/analytics.tf from the exporter's schema (analytics/src/schema.rs):
the bucket, the Glue tables (one per exported table, columns in order with
their Hive types) and the Athena workgroup. Run from the repository root
after changing a table; analytics/tests/infra.rs fails until you do."""
import re
s=open('analytics/src/schema.rs').read()
hive={'Str':'string','I32':'int','I64':'bigint','F64':'double','Bool':'boolean','Money':'decimal(12,2)','Ts':'timestamp','Naive':'timestamp','Date':'date'}
out=[]
out.append('''# Analytics (issue 18): the Parquet export's bucket, its Glue tables (partition
# projection over received_date, so no crawler and no partition registration)
# and an Athena workgroup whose results are encrypted. The service writes
# <bucket>/clearway/v1/<table>/received_date=YYYY-MM-DD/part-<first>-<last>.parquet
# (clearway export, or serve every analytics.export_every_secs).
#
# The table blocks below are generated from the exporter's schema
# (analytics/src/schema.rs) by scripts/gen-analytics-tf.py; a test (analytics/tests/infra.rs)
# fails when they disagree.

resource "aws_s3_bucket" "analytics" {
  bucket = "${local.prefix}-analytics"
  # checkov:skip=CKV_AWS_144: Cross-region replication is a disaster-recovery choice per deployment; the files can be re-exported from the retained change batches.
  # checkov:skip=CKV2_AWS_62: Nothing consumes object events: readers query the tables.
}

resource "aws_s3_bucket_versioning" "analytics" {
  bucket = aws_s3_bucket.analytics.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "analytics" {
  bucket = aws_s3_bucket.analytics.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.data.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "analytics" {
  bucket                  = aws_s3_bucket.analytics.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "analytics" {
  bucket = aws_s3_bucket.analytics.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

data "aws_iam_policy_document" "analytics" {
  statement {
    sid     = "TlsOnly"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.analytics.arn,
      "${aws_s3_bucket.analytics.arn}/*",
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

resource "aws_s3_bucket_policy" "analytics" {
  bucket = aws_s3_bucket.analytics.id
  policy = data.aws_iam_policy_document.analytics.json
}

resource "aws_s3_bucket_lifecycle_configuration" "analytics" {
  bucket = aws_s3_bucket.analytics.id
  rule {
    id     = "uploads-and-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
  rule {
    id     = "athena-results"
    status = "Enabled"
    filter {
      prefix = "athena-results/"
    }
    expiration {
      days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

resource "aws_s3_bucket_logging" "analytics" {
  bucket        = aws_s3_bucket.analytics.id
  target_bucket = aws_s3_bucket.access_logs.id
  target_prefix = "s3/analytics/"
}

resource "aws_glue_catalog_database" "analytics" {
  name        = replace("${local.prefix}_analytics", "-", "_")
  description = "Clearway's analytics export (limited data set): docs/specs/analytics.md"
}

resource "aws_glue_data_catalog_encryption_settings" "analytics" {
  data_catalog_encryption_settings {
    connection_password_encryption {
      aws_kms_key_id                       = aws_kms_key.data.arn
      return_connection_password_encrypted = true
    }
    encryption_at_rest {
      catalog_encryption_mode = "SSE-KMS"
      sse_aws_kms_key_id      = aws_kms_key.data.arn
    }
  }
}

resource "aws_athena_workgroup" "analytics" {
  name = "${local.prefix}-analytics"
  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true
    result_configuration {
      output_location = "s3://${aws_s3_bucket.analytics.bucket}/athena-results/"
      encryption_configuration {
        encryption_option = "SSE_KMS"
        kms_key_arn       = aws_kms_key.data.arn
      }
    }
  }
}
''')
for m in re.finditer(r'pub (?:const|static) (\w+): TableDef = TableDef \{\s*name: "(\w+)",\s*doc: "([^"]*)",\s*columns: &\[(.*?)\],\s*\};', s, re.S):
    name, doc, cols = m.group(2), m.group(3), m.group(4)
    partitioned = '("received_at",' in cols
    if partitioned:
        params = f'''
    classification                           = "parquet"
    "projection.enabled"                     = "true"
    "projection.received_date.type"          = "date"
    "projection.received_date.format"        = "yyyy-MM-dd"
    "projection.received_date.range"         = "2024-01-01,NOW"
    "projection.received_date.interval"      = "1"
    "projection.received_date.interval.unit" = "DAYS"
    "storage.location.template"              = "s3://${{aws_s3_bucket.analytics.bucket}}/clearway/v1/{name}/received_date=$${{received_date}}/"'''
        keys = '''
  partition_keys {
    name = "received_date"
    type = "string"
  }'''
    else:
        params = '''
    classification = "parquet"'''
        keys = ""
    out.append(f'''
resource "aws_glue_catalog_table" "{name}" {{
  name          = "{name}"
  database_name = aws_glue_catalog_database.analytics.name
  description   = "{doc}"
  table_type    = "EXTERNAL_TABLE"
  parameters = {{{params}
  }}{keys}
  storage_descriptor {{
    location      = "s3://${{aws_s3_bucket.analytics.bucket}}/clearway/v1/{name}/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    ser_de_info {{
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }}''')
    for c in re.finditer(r'\("(\w+)", (\w+)\)', cols):
        out.append(f'''    columns {{
      name = "{c.group(1)}"
      type = "{hive[c.group(2)]}"
    }}''')
    out.append('''  }
}''')
open('infra/analytics.tf','w').write("\n".join(out)+"\n")
