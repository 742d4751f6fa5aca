# Analytics (issue 18): the Parquet export's bucket, its Glue tables (partition
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


resource "aws_glue_catalog_table" "transaction" {
  name          = "transaction"
  database_name = aws_glue_catalog_database.analytics.name
  description   = "one row per transaction processed (any format): status, size, claims, timings"
  table_type    = "EXTERNAL_TABLE"
  parameters = {
    classification                           = "parquet"
    "projection.enabled"                     = "true"
    "projection.received_date.type"          = "date"
    "projection.received_date.format"        = "yyyy-MM-dd"
    "projection.received_date.range"         = "2024-01-01,NOW"
    "projection.received_date.interval"      = "1"
    "projection.received_date.interval.unit" = "DAYS"
    "storage.location.template"              = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/transaction/received_date=$${received_date}/"
  }
  partition_keys {
    name = "received_date"
    type = "string"
  }
  storage_descriptor {
    location      = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/transaction/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }
    columns {
      name = "tenant_id"
      type = "string"
    }
    columns {
      name = "transaction_id"
      type = "string"
    }
    columns {
      name = "format"
      type = "string"
    }
    columns {
      name = "channel"
      type = "string"
    }
    columns {
      name = "status"
      type = "string"
    }
    columns {
      name = "payload_bytes"
      type = "bigint"
    }
    columns {
      name = "document_count"
      type = "int"
    }
    columns {
      name = "claim_count"
      type = "int"
    }
    columns {
      name = "ack_kinds"
      type = "string"
    }
    columns {
      name = "attempts"
      type = "int"
    }
    columns {
      name = "received_at"
      type = "timestamp"
    }
    columns {
      name = "processed_at"
      type = "timestamp"
    }
    columns {
      name = "latency_ms"
      type = "bigint"
    }
    columns {
      name = "export_seq"
      type = "bigint"
    }
  }
}

resource "aws_glue_catalog_table" "interchange" {
  name          = "interchange"
  database_name = aws_glue_catalog_database.analytics.name
  description   = "one row per X12 interchange (ISA/IEA) received"
  table_type    = "EXTERNAL_TABLE"
  parameters = {
    classification                           = "parquet"
    "projection.enabled"                     = "true"
    "projection.received_date.type"          = "date"
    "projection.received_date.format"        = "yyyy-MM-dd"
    "projection.received_date.range"         = "2024-01-01,NOW"
    "projection.received_date.interval"      = "1"
    "projection.received_date.interval.unit" = "DAYS"
    "storage.location.template"              = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/interchange/received_date=$${received_date}/"
  }
  partition_keys {
    name = "received_date"
    type = "string"
  }
  storage_descriptor {
    location      = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/interchange/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }
    columns {
      name = "tenant_id"
      type = "string"
    }
    columns {
      name = "transaction_id"
      type = "string"
    }
    columns {
      name = "interchange_index"
      type = "int"
    }
    columns {
      name = "isa05_sender_qualifier"
      type = "string"
    }
    columns {
      name = "isa06_sender"
      type = "string"
    }
    columns {
      name = "isa07_receiver_qualifier"
      type = "string"
    }
    columns {
      name = "isa08_receiver"
      type = "string"
    }
    columns {
      name = "isa13_control"
      type = "string"
    }
    columns {
      name = "isa15_usage"
      type = "string"
    }
    columns {
      name = "group_count"
      type = "int"
    }
    columns {
      name = "set_count"
      type = "int"
    }
    columns {
      name = "ta1_code"
      type = "string"
    }
    columns {
      name = "ta1_note_code"
      type = "string"
    }
    columns {
      name = "status"
      type = "string"
    }
    columns {
      name = "received_at"
      type = "timestamp"
    }
    columns {
      name = "processed_at"
      type = "timestamp"
    }
    columns {
      name = "export_seq"
      type = "bigint"
    }
  }
}

resource "aws_glue_catalog_table" "transaction_set" {
  name          = "transaction_set"
  database_name = aws_glue_catalog_database.analytics.name
  description   = "one row per X12 transaction set (ST/SE) received, with its 999 verdict"
  table_type    = "EXTERNAL_TABLE"
  parameters = {
    classification                           = "parquet"
    "projection.enabled"                     = "true"
    "projection.received_date.type"          = "date"
    "projection.received_date.format"        = "yyyy-MM-dd"
    "projection.received_date.range"         = "2024-01-01,NOW"
    "projection.received_date.interval"      = "1"
    "projection.received_date.interval.unit" = "DAYS"
    "storage.location.template"              = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/transaction_set/received_date=$${received_date}/"
  }
  partition_keys {
    name = "received_date"
    type = "string"
  }
  storage_descriptor {
    location      = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/transaction_set/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }
    columns {
      name = "tenant_id"
      type = "string"
    }
    columns {
      name = "transaction_id"
      type = "string"
    }
    columns {
      name = "isa13_control"
      type = "string"
    }
    columns {
      name = "gs01_functional_id"
      type = "string"
    }
    columns {
      name = "gs02_sender"
      type = "string"
    }
    columns {
      name = "gs03_receiver"
      type = "string"
    }
    columns {
      name = "gs06_control"
      type = "string"
    }
    columns {
      name = "gs08_version"
      type = "string"
    }
    columns {
      name = "st01"
      type = "string"
    }
    columns {
      name = "st02"
      type = "string"
    }
    columns {
      name = "st03"
      type = "string"
    }
    columns {
      name = "segment_count"
      type = "int"
    }
    columns {
      name = "ack_999_code"
      type = "string"
    }
    columns {
      name = "error_count"
      type = "int"
    }
    columns {
      name = "received_at"
      type = "timestamp"
    }
    columns {
      name = "processed_at"
      type = "timestamp"
    }
    columns {
      name = "export_seq"
      type = "bigint"
    }
  }
}

resource "aws_glue_catalog_table" "ack_error" {
  name          = "ack_error"
  database_name = aws_glue_catalog_database.analytics.name
  description   = "one row per error our 999 reported (IK3 segment error, with its IK4 element error if any); the bad value (IK404) is never exported"
  table_type    = "EXTERNAL_TABLE"
  parameters = {
    classification                           = "parquet"
    "projection.enabled"                     = "true"
    "projection.received_date.type"          = "date"
    "projection.received_date.format"        = "yyyy-MM-dd"
    "projection.received_date.range"         = "2024-01-01,NOW"
    "projection.received_date.interval"      = "1"
    "projection.received_date.interval.unit" = "DAYS"
    "storage.location.template"              = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/ack_error/received_date=$${received_date}/"
  }
  partition_keys {
    name = "received_date"
    type = "string"
  }
  storage_descriptor {
    location      = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/ack_error/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }
    columns {
      name = "tenant_id"
      type = "string"
    }
    columns {
      name = "transaction_id"
      type = "string"
    }
    columns {
      name = "gs06_control"
      type = "string"
    }
    columns {
      name = "st01"
      type = "string"
    }
    columns {
      name = "st02"
      type = "string"
    }
    columns {
      name = "ik501_code"
      type = "string"
    }
    columns {
      name = "ik301_segment_id"
      type = "string"
    }
    columns {
      name = "ik302_segment_pos"
      type = "int"
    }
    columns {
      name = "ik303_loop_id"
      type = "string"
    }
    columns {
      name = "ik304_code"
      type = "string"
    }
    columns {
      name = "ik401_element_pos"
      type = "string"
    }
    columns {
      name = "ik402_element_ref"
      type = "string"
    }
    columns {
      name = "ik403_code"
      type = "string"
    }
    columns {
      name = "received_at"
      type = "timestamp"
    }
    columns {
      name = "export_seq"
      type = "bigint"
    }
  }
}

resource "aws_glue_catalog_table" "claim" {
  name          = "claim"
  database_name = aws_glue_catalog_database.analytics.name
  description   = "one row per claim (837 CLM or FHIR Claim) with its front-end verdict (our 277CA)"
  table_type    = "EXTERNAL_TABLE"
  parameters = {
    classification                           = "parquet"
    "projection.enabled"                     = "true"
    "projection.received_date.type"          = "date"
    "projection.received_date.format"        = "yyyy-MM-dd"
    "projection.received_date.range"         = "2024-01-01,NOW"
    "projection.received_date.interval"      = "1"
    "projection.received_date.interval.unit" = "DAYS"
    "storage.location.template"              = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/claim/received_date=$${received_date}/"
  }
  partition_keys {
    name = "received_date"
    type = "string"
  }
  storage_descriptor {
    location      = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/claim/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }
    columns {
      name = "tenant_id"
      type = "string"
    }
    columns {
      name = "transaction_id"
      type = "string"
    }
    columns {
      name = "claim_key"
      type = "string"
    }
    columns {
      name = "claim_type"
      type = "string"
    }
    columns {
      name = "implementation"
      type = "string"
    }
    columns {
      name = "st02"
      type = "string"
    }
    columns {
      name = "billing_npi"
      type = "string"
    }
    columns {
      name = "payer_id"
      type = "string"
    }
    columns {
      name = "pcn_token"
      type = "string"
    }
    columns {
      name = "member_token"
      type = "string"
    }
    columns {
      name = "facility_code"
      type = "string"
    }
    columns {
      name = "frequency_code"
      type = "string"
    }
    columns {
      name = "total_charge"
      type = "decimal(12,2)"
    }
    columns {
      name = "service_from"
      type = "date"
    }
    columns {
      name = "service_to"
      type = "date"
    }
    columns {
      name = "line_count"
      type = "int"
    }
    columns {
      name = "diagnosis_count"
      type = "int"
    }
    columns {
      name = "principal_diagnosis"
      type = "string"
    }
    columns {
      name = "status"
      type = "string"
    }
    columns {
      name = "stc"
      type = "string"
    }
    columns {
      name = "received_at"
      type = "timestamp"
    }
    columns {
      name = "export_seq"
      type = "bigint"
    }
  }
}

resource "aws_glue_catalog_table" "claim_line" {
  name          = "claim_line"
  database_name = aws_glue_catalog_database.analytics.name
  description   = "one row per service line (837 LX loop 2400 or FHIR Claim.item)"
  table_type    = "EXTERNAL_TABLE"
  parameters = {
    classification                           = "parquet"
    "projection.enabled"                     = "true"
    "projection.received_date.type"          = "date"
    "projection.received_date.format"        = "yyyy-MM-dd"
    "projection.received_date.range"         = "2024-01-01,NOW"
    "projection.received_date.interval"      = "1"
    "projection.received_date.interval.unit" = "DAYS"
    "storage.location.template"              = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/claim_line/received_date=$${received_date}/"
  }
  partition_keys {
    name = "received_date"
    type = "string"
  }
  storage_descriptor {
    location      = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/claim_line/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }
    columns {
      name = "tenant_id"
      type = "string"
    }
    columns {
      name = "transaction_id"
      type = "string"
    }
    columns {
      name = "claim_key"
      type = "string"
    }
    columns {
      name = "line_number"
      type = "int"
    }
    columns {
      name = "claim_type"
      type = "string"
    }
    columns {
      name = "payer_id"
      type = "string"
    }
    columns {
      name = "billing_npi"
      type = "string"
    }
    columns {
      name = "procedure_qualifier"
      type = "string"
    }
    columns {
      name = "procedure_code"
      type = "string"
    }
    columns {
      name = "modifier_1"
      type = "string"
    }
    columns {
      name = "modifier_2"
      type = "string"
    }
    columns {
      name = "modifier_3"
      type = "string"
    }
    columns {
      name = "modifier_4"
      type = "string"
    }
    columns {
      name = "revenue_code"
      type = "string"
    }
    columns {
      name = "charge"
      type = "decimal(12,2)"
    }
    columns {
      name = "units"
      type = "double"
    }
    columns {
      name = "unit_basis"
      type = "string"
    }
    columns {
      name = "place_of_service"
      type = "string"
    }
    columns {
      name = "service_from"
      type = "date"
    }
    columns {
      name = "service_to"
      type = "date"
    }
    columns {
      name = "received_at"
      type = "timestamp"
    }
    columns {
      name = "export_seq"
      type = "bigint"
    }
  }
}

resource "aws_glue_catalog_table" "claim_ack" {
  name          = "claim_ack"
  database_name = aws_glue_catalog_database.analytics.name
  description   = "one row per STC of a 277CA about a claim (line_number null) or one of its lines"
  table_type    = "EXTERNAL_TABLE"
  parameters = {
    classification                           = "parquet"
    "projection.enabled"                     = "true"
    "projection.received_date.type"          = "date"
    "projection.received_date.format"        = "yyyy-MM-dd"
    "projection.received_date.range"         = "2024-01-01,NOW"
    "projection.received_date.interval"      = "1"
    "projection.received_date.interval.unit" = "DAYS"
    "storage.location.template"              = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/claim_ack/received_date=$${received_date}/"
  }
  partition_keys {
    name = "received_date"
    type = "string"
  }
  storage_descriptor {
    location      = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/claim_ack/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }
    columns {
      name = "tenant_id"
      type = "string"
    }
    columns {
      name = "transaction_id"
      type = "string"
    }
    columns {
      name = "claim_key"
      type = "string"
    }
    columns {
      name = "line_number"
      type = "int"
    }
    columns {
      name = "ack_source"
      type = "string"
    }
    columns {
      name = "stc01_1_category"
      type = "string"
    }
    columns {
      name = "stc01_2_status"
      type = "string"
    }
    columns {
      name = "stc01_3_entity"
      type = "string"
    }
    columns {
      name = "stc03_action"
      type = "string"
    }
    columns {
      name = "received_at"
      type = "timestamp"
    }
    columns {
      name = "acked_at"
      type = "timestamp"
    }
    columns {
      name = "export_seq"
      type = "bigint"
    }
  }
}

resource "aws_glue_catalog_table" "hl7_message" {
  name          = "hl7_message"
  database_name = aws_glue_catalog_database.analytics.name
  description   = "one row per HL7 v2 message received (HTTP or MLLP), with the ACK Clearway answered"
  table_type    = "EXTERNAL_TABLE"
  parameters = {
    classification                           = "parquet"
    "projection.enabled"                     = "true"
    "projection.received_date.type"          = "date"
    "projection.received_date.format"        = "yyyy-MM-dd"
    "projection.received_date.range"         = "2024-01-01,NOW"
    "projection.received_date.interval"      = "1"
    "projection.received_date.interval.unit" = "DAYS"
    "storage.location.template"              = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/hl7_message/received_date=$${received_date}/"
  }
  partition_keys {
    name = "received_date"
    type = "string"
  }
  storage_descriptor {
    location      = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/hl7_message/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }
    columns {
      name = "tenant_id"
      type = "string"
    }
    columns {
      name = "transaction_id"
      type = "string"
    }
    columns {
      name = "message_number"
      type = "int"
    }
    columns {
      name = "channel"
      type = "string"
    }
    columns {
      name = "status"
      type = "string"
    }
    columns {
      name = "msh3_sending_app"
      type = "string"
    }
    columns {
      name = "msh4_sending_facility"
      type = "string"
    }
    columns {
      name = "msh5_receiving_app"
      type = "string"
    }
    columns {
      name = "msh6_receiving_facility"
      type = "string"
    }
    columns {
      name = "msh9_code"
      type = "string"
    }
    columns {
      name = "msh9_trigger"
      type = "string"
    }
    columns {
      name = "msh9_structure"
      type = "string"
    }
    columns {
      name = "msh10_control_id"
      type = "string"
    }
    columns {
      name = "msh11_processing_id"
      type = "string"
    }
    columns {
      name = "msh12_version"
      type = "string"
    }
    columns {
      name = "msa1_ack_code"
      type = "string"
    }
    columns {
      name = "err_count"
      type = "int"
    }
    columns {
      name = "received_at"
      type = "timestamp"
    }
    columns {
      name = "processed_at"
      type = "timestamp"
    }
    columns {
      name = "latency_ms"
      type = "bigint"
    }
    columns {
      name = "export_seq"
      type = "bigint"
    }
  }
}

resource "aws_glue_catalog_table" "fhir_request" {
  name          = "fhir_request"
  database_name = aws_glue_catalog_database.analytics.name
  description   = "one row per FHIR R4 resource or Bundle received, with the answer Clearway gave"
  table_type    = "EXTERNAL_TABLE"
  parameters = {
    classification                           = "parquet"
    "projection.enabled"                     = "true"
    "projection.received_date.type"          = "date"
    "projection.received_date.format"        = "yyyy-MM-dd"
    "projection.received_date.range"         = "2024-01-01,NOW"
    "projection.received_date.interval"      = "1"
    "projection.received_date.interval.unit" = "DAYS"
    "storage.location.template"              = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/fhir_request/received_date=$${received_date}/"
  }
  partition_keys {
    name = "received_date"
    type = "string"
  }
  storage_descriptor {
    location      = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/fhir_request/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }
    columns {
      name = "tenant_id"
      type = "string"
    }
    columns {
      name = "transaction_id"
      type = "string"
    }
    columns {
      name = "channel"
      type = "string"
    }
    columns {
      name = "status"
      type = "string"
    }
    columns {
      name = "resource_type"
      type = "string"
    }
    columns {
      name = "bundle_type"
      type = "string"
    }
    columns {
      name = "entries"
      type = "int"
    }
    columns {
      name = "claims"
      type = "int"
    }
    columns {
      name = "answer_type"
      type = "string"
    }
    columns {
      name = "answer_errors"
      type = "int"
    }
    columns {
      name = "first_issue_code"
      type = "string"
    }
    columns {
      name = "received_at"
      type = "timestamp"
    }
    columns {
      name = "processed_at"
      type = "timestamp"
    }
    columns {
      name = "latency_ms"
      type = "bigint"
    }
    columns {
      name = "export_seq"
      type = "bigint"
    }
  }
}

resource "aws_glue_catalog_table" "dead_letter" {
  name          = "dead_letter"
  database_name = aws_glue_catalog_database.analytics.name
  description   = "one row per transaction moved to the dead-letter store"
  table_type    = "EXTERNAL_TABLE"
  parameters = {
    classification                           = "parquet"
    "projection.enabled"                     = "true"
    "projection.received_date.type"          = "date"
    "projection.received_date.format"        = "yyyy-MM-dd"
    "projection.received_date.range"         = "2024-01-01,NOW"
    "projection.received_date.interval"      = "1"
    "projection.received_date.interval.unit" = "DAYS"
    "storage.location.template"              = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/dead_letter/received_date=$${received_date}/"
  }
  partition_keys {
    name = "received_date"
    type = "string"
  }
  storage_descriptor {
    location      = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/dead_letter/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }
    columns {
      name = "tenant_id"
      type = "string"
    }
    columns {
      name = "transaction_id"
      type = "string"
    }
    columns {
      name = "format"
      type = "string"
    }
    columns {
      name = "channel"
      type = "string"
    }
    columns {
      name = "reason"
      type = "string"
    }
    columns {
      name = "attempts"
      type = "int"
    }
    columns {
      name = "received_at"
      type = "timestamp"
    }
    columns {
      name = "dead_lettered_at"
      type = "timestamp"
    }
    columns {
      name = "export_seq"
      type = "bigint"
    }
  }
}

resource "aws_glue_catalog_table" "payer_batch" {
  name          = "payer_batch"
  database_name = aws_glue_catalog_database.analytics.name
  description   = "one row per step of an outbound 837 batch to a payer: delivered, and the payer's TA1 or 999 about it"
  table_type    = "EXTERNAL_TABLE"
  parameters = {
    classification                           = "parquet"
    "projection.enabled"                     = "true"
    "projection.received_date.type"          = "date"
    "projection.received_date.format"        = "yyyy-MM-dd"
    "projection.received_date.range"         = "2024-01-01,NOW"
    "projection.received_date.interval"      = "1"
    "projection.received_date.interval.unit" = "DAYS"
    "storage.location.template"              = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/payer_batch/received_date=$${received_date}/"
  }
  partition_keys {
    name = "received_date"
    type = "string"
  }
  storage_descriptor {
    location      = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/payer_batch/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }
    columns {
      name = "tenant_id"
      type = "string"
    }
    columns {
      name = "batch_id"
      type = "string"
    }
    columns {
      name = "payer_id"
      type = "string"
    }
    columns {
      name = "isa13_control"
      type = "bigint"
    }
    columns {
      name = "step"
      type = "string"
    }
    columns {
      name = "claims"
      type = "bigint"
    }
    columns {
      name = "bytes"
      type = "bigint"
    }
    columns {
      name = "created_at"
      type = "timestamp"
    }
    columns {
      name = "delivered_at"
      type = "timestamp"
    }
    columns {
      name = "delivery"
      type = "string"
    }
    columns {
      name = "attempts"
      type = "int"
    }
    columns {
      name = "verdict"
      type = "string"
    }
    columns {
      name = "event_at"
      type = "timestamp"
    }
    columns {
      name = "received_at"
      type = "timestamp"
    }
    columns {
      name = "export_seq"
      type = "bigint"
    }
  }
}

resource "aws_glue_catalog_table" "claim_route" {
  name          = "claim_route"
  database_name = aws_glue_catalog_database.analytics.name
  description   = "one row per claim delivered to a payer in an outbound batch, with its receipt and the delivery"
  table_type    = "EXTERNAL_TABLE"
  parameters = {
    classification                           = "parquet"
    "projection.enabled"                     = "true"
    "projection.received_date.type"          = "date"
    "projection.received_date.format"        = "yyyy-MM-dd"
    "projection.received_date.range"         = "2024-01-01,NOW"
    "projection.received_date.interval"      = "1"
    "projection.received_date.interval.unit" = "DAYS"
    "storage.location.template"              = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/claim_route/received_date=$${received_date}/"
  }
  partition_keys {
    name = "received_date"
    type = "string"
  }
  storage_descriptor {
    location      = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/claim_route/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }
    columns {
      name = "tenant_id"
      type = "string"
    }
    columns {
      name = "transaction_id"
      type = "string"
    }
    columns {
      name = "claim_key"
      type = "string"
    }
    columns {
      name = "payer_id"
      type = "string"
    }
    columns {
      name = "batch_id"
      type = "string"
    }
    columns {
      name = "received_at"
      type = "timestamp"
    }
    columns {
      name = "delivered_at"
      type = "timestamp"
    }
    columns {
      name = "latency_ms"
      type = "bigint"
    }
    columns {
      name = "export_seq"
      type = "bigint"
    }
  }
}

resource "aws_glue_catalog_table" "duplicate" {
  name          = "duplicate"
  database_name = aws_glue_catalog_database.analytics.name
  description   = "one row per submission answered as a duplicate of an earlier transaction, with the layer that caught it"
  table_type    = "EXTERNAL_TABLE"
  parameters = {
    classification                           = "parquet"
    "projection.enabled"                     = "true"
    "projection.received_date.type"          = "date"
    "projection.received_date.format"        = "yyyy-MM-dd"
    "projection.received_date.range"         = "2024-01-01,NOW"
    "projection.received_date.interval"      = "1"
    "projection.received_date.interval.unit" = "DAYS"
    "storage.location.template"              = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/duplicate/received_date=$${received_date}/"
  }
  partition_keys {
    name = "received_date"
    type = "string"
  }
  storage_descriptor {
    location      = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/duplicate/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }
    columns {
      name = "tenant_id"
      type = "string"
    }
    columns {
      name = "transaction_id"
      type = "string"
    }
    columns {
      name = "original_transaction_id"
      type = "string"
    }
    columns {
      name = "layer"
      type = "string"
    }
    columns {
      name = "format"
      type = "string"
    }
    columns {
      name = "channel"
      type = "string"
    }
    columns {
      name = "payload_bytes"
      type = "bigint"
    }
    columns {
      name = "received_at"
      type = "timestamp"
    }
    columns {
      name = "export_seq"
      type = "bigint"
    }
  }
}

resource "aws_glue_catalog_table" "rt_exchange" {
  name          = "rt_exchange"
  database_name = aws_glue_catalog_database.analytics.name
  description   = "one row per real-time request (270, 276) the fast path answered, with what CAQH CORE asks to capture and report"
  table_type    = "EXTERNAL_TABLE"
  parameters = {
    classification                           = "parquet"
    "projection.enabled"                     = "true"
    "projection.received_date.type"          = "date"
    "projection.received_date.format"        = "yyyy-MM-dd"
    "projection.received_date.range"         = "2024-01-01,NOW"
    "projection.received_date.interval"      = "1"
    "projection.received_date.interval.unit" = "DAYS"
    "storage.location.template"              = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/rt_exchange/received_date=$${received_date}/"
  }
  partition_keys {
    name = "received_date"
    type = "string"
  }
  storage_descriptor {
    location      = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/rt_exchange/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }
    columns {
      name = "tenant_id"
      type = "string"
    }
    columns {
      name = "request_id"
      type = "string"
    }
    columns {
      name = "txn"
      type = "string"
    }
    columns {
      name = "response_kind"
      type = "string"
    }
    columns {
      name = "served"
      type = "string"
    }
    columns {
      name = "received_at"
      type = "timestamp"
    }
    columns {
      name = "responded_at"
      type = "timestamp"
    }
    columns {
      name = "latency_ms"
      type = "double"
    }
    columns {
      name = "within_20s"
      type = "boolean"
    }
    columns {
      name = "upstream_ms"
      type = "double"
    }
    columns {
      name = "payer_id"
      type = "string"
    }
    columns {
      name = "isa06_sender"
      type = "string"
    }
    columns {
      name = "isa08_receiver"
      type = "string"
    }
    columns {
      name = "isa13_control"
      type = "string"
    }
    columns {
      name = "gs02_sender"
      type = "string"
    }
    columns {
      name = "gs03_receiver"
      type = "string"
    }
    columns {
      name = "gs06_control"
      type = "string"
    }
    columns {
      name = "st02"
      type = "string"
    }
    columns {
      name = "bht03_token"
      type = "string"
    }
    columns {
      name = "trn02_token"
      type = "string"
    }
    columns {
      name = "aaa_codes"
      type = "string"
    }
    columns {
      name = "aaa_count"
      type = "int"
    }
    columns {
      name = "export_seq"
      type = "bigint"
    }
  }
}

resource "aws_glue_catalog_table" "remit_claim" {
  name          = "remit_claim"
  database_name = aws_glue_catalog_database.analytics.name
  description   = "one row per claim paid or denied in an 835 received (CLP), with its payment's BPR and TRN"
  table_type    = "EXTERNAL_TABLE"
  parameters = {
    classification                           = "parquet"
    "projection.enabled"                     = "true"
    "projection.received_date.type"          = "date"
    "projection.received_date.format"        = "yyyy-MM-dd"
    "projection.received_date.range"         = "2024-01-01,NOW"
    "projection.received_date.interval"      = "1"
    "projection.received_date.interval.unit" = "DAYS"
    "storage.location.template"              = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/remit_claim/received_date=$${received_date}/"
  }
  partition_keys {
    name = "received_date"
    type = "string"
  }
  storage_descriptor {
    location      = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/remit_claim/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }
    columns {
      name = "tenant_id"
      type = "string"
    }
    columns {
      name = "transaction_id"
      type = "string"
    }
    columns {
      name = "remit_key"
      type = "string"
    }
    columns {
      name = "payer_id"
      type = "string"
    }
    columns {
      name = "payee_npi"
      type = "string"
    }
    columns {
      name = "trn02_trace"
      type = "string"
    }
    columns {
      name = "bpr16_payment_date"
      type = "date"
    }
    columns {
      name = "clp01_pcn_token"
      type = "string"
    }
    columns {
      name = "clp02_status"
      type = "string"
    }
    columns {
      name = "clp03_charge"
      type = "decimal(12,2)"
    }
    columns {
      name = "clp04_paid"
      type = "decimal(12,2)"
    }
    columns {
      name = "clp05_patient_resp"
      type = "decimal(12,2)"
    }
    columns {
      name = "clp07_payer_claim_token"
      type = "string"
    }
    columns {
      name = "received_at"
      type = "timestamp"
    }
    columns {
      name = "export_seq"
      type = "bigint"
    }
  }
}

resource "aws_glue_catalog_table" "remit_line" {
  name          = "remit_line"
  database_name = aws_glue_catalog_database.analytics.name
  description   = "one row per service line paid or denied in an 835 received (SVC, loop 2110)"
  table_type    = "EXTERNAL_TABLE"
  parameters = {
    classification                           = "parquet"
    "projection.enabled"                     = "true"
    "projection.received_date.type"          = "date"
    "projection.received_date.format"        = "yyyy-MM-dd"
    "projection.received_date.range"         = "2024-01-01,NOW"
    "projection.received_date.interval"      = "1"
    "projection.received_date.interval.unit" = "DAYS"
    "storage.location.template"              = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/remit_line/received_date=$${received_date}/"
  }
  partition_keys {
    name = "received_date"
    type = "string"
  }
  storage_descriptor {
    location      = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/remit_line/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }
    columns {
      name = "tenant_id"
      type = "string"
    }
    columns {
      name = "transaction_id"
      type = "string"
    }
    columns {
      name = "remit_key"
      type = "string"
    }
    columns {
      name = "line_number"
      type = "int"
    }
    columns {
      name = "payer_id"
      type = "string"
    }
    columns {
      name = "clp02_status"
      type = "string"
    }
    columns {
      name = "procedure_qualifier"
      type = "string"
    }
    columns {
      name = "procedure_code"
      type = "string"
    }
    columns {
      name = "original_procedure_code"
      type = "string"
    }
    columns {
      name = "modifier_1"
      type = "string"
    }
    columns {
      name = "modifier_2"
      type = "string"
    }
    columns {
      name = "modifier_3"
      type = "string"
    }
    columns {
      name = "modifier_4"
      type = "string"
    }
    columns {
      name = "revenue_code"
      type = "string"
    }
    columns {
      name = "svc02_charge"
      type = "decimal(12,2)"
    }
    columns {
      name = "svc03_paid"
      type = "decimal(12,2)"
    }
    columns {
      name = "svc05_units_paid"
      type = "double"
    }
    columns {
      name = "service_from"
      type = "date"
    }
    columns {
      name = "service_to"
      type = "date"
    }
    columns {
      name = "ref_6r_line_control_token"
      type = "string"
    }
    columns {
      name = "received_at"
      type = "timestamp"
    }
    columns {
      name = "export_seq"
      type = "bigint"
    }
  }
}

resource "aws_glue_catalog_table" "remit_adjustment" {
  name          = "remit_adjustment"
  database_name = aws_glue_catalog_database.analytics.name
  description   = "one row per CAS adjustment (group, CARC, amount) of an 835 received, at claim level (line_number null) or line level"
  table_type    = "EXTERNAL_TABLE"
  parameters = {
    classification                           = "parquet"
    "projection.enabled"                     = "true"
    "projection.received_date.type"          = "date"
    "projection.received_date.format"        = "yyyy-MM-dd"
    "projection.received_date.range"         = "2024-01-01,NOW"
    "projection.received_date.interval"      = "1"
    "projection.received_date.interval.unit" = "DAYS"
    "storage.location.template"              = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/remit_adjustment/received_date=$${received_date}/"
  }
  partition_keys {
    name = "received_date"
    type = "string"
  }
  storage_descriptor {
    location      = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/remit_adjustment/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }
    columns {
      name = "tenant_id"
      type = "string"
    }
    columns {
      name = "transaction_id"
      type = "string"
    }
    columns {
      name = "remit_key"
      type = "string"
    }
    columns {
      name = "line_number"
      type = "int"
    }
    columns {
      name = "payer_id"
      type = "string"
    }
    columns {
      name = "clp02_status"
      type = "string"
    }
    columns {
      name = "group_code"
      type = "string"
    }
    columns {
      name = "reason_code"
      type = "string"
    }
    columns {
      name = "amount"
      type = "decimal(12,2)"
    }
    columns {
      name = "quantity"
      type = "double"
    }
    columns {
      name = "received_at"
      type = "timestamp"
    }
    columns {
      name = "export_seq"
      type = "bigint"
    }
  }
}

resource "aws_glue_catalog_table" "enrollment_span" {
  name          = "enrollment_span"
  database_name = aws_glue_catalog_database.analytics.name
  description   = "one row per member and coverage span of an 834 received (INS, HD, DTP 348/349)"
  table_type    = "EXTERNAL_TABLE"
  parameters = {
    classification                           = "parquet"
    "projection.enabled"                     = "true"
    "projection.received_date.type"          = "date"
    "projection.received_date.format"        = "yyyy-MM-dd"
    "projection.received_date.range"         = "2024-01-01,NOW"
    "projection.received_date.interval"      = "1"
    "projection.received_date.interval.unit" = "DAYS"
    "storage.location.template"              = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/enrollment_span/received_date=$${received_date}/"
  }
  partition_keys {
    name = "received_date"
    type = "string"
  }
  storage_descriptor {
    location      = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/enrollment_span/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }
    columns {
      name = "tenant_id"
      type = "string"
    }
    columns {
      name = "transaction_id"
      type = "string"
    }
    columns {
      name = "payer_id"
      type = "string"
    }
    columns {
      name = "sponsor_id"
      type = "string"
    }
    columns {
      name = "member_token"
      type = "string"
    }
    columns {
      name = "subscriber_token"
      type = "string"
    }
    columns {
      name = "is_subscriber"
      type = "boolean"
    }
    columns {
      name = "relationship"
      type = "string"
    }
    columns {
      name = "maintenance"
      type = "string"
    }
    columns {
      name = "insurance_line"
      type = "string"
    }
    columns {
      name = "plan"
      type = "string"
    }
    columns {
      name = "coverage_level"
      type = "string"
    }
    columns {
      name = "begin_date"
      type = "date"
    }
    columns {
      name = "end_date"
      type = "date"
    }
    columns {
      name = "received_at"
      type = "timestamp"
    }
    columns {
      name = "export_seq"
      type = "bigint"
    }
  }
}

resource "aws_glue_catalog_table" "tuva_medical_claim" {
  name          = "tuva_medical_claim"
  database_name = aws_glue_catalog_database.analytics.name
  description   = "Tuva Project input layer medical_claim: one row per 837P/837I service line, Tuva's column names and types (paid amounts empty until 835s are exported)"
  table_type    = "EXTERNAL_TABLE"
  parameters = {
    classification = "parquet"
  }
  storage_descriptor {
    location      = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/tuva_medical_claim/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }
    columns {
      name = "claim_id"
      type = "string"
    }
    columns {
      name = "claim_line_number"
      type = "int"
    }
    columns {
      name = "claim_type"
      type = "string"
    }
    columns {
      name = "person_id"
      type = "string"
    }
    columns {
      name = "member_id"
      type = "string"
    }
    columns {
      name = "payer"
      type = "string"
    }
    columns {
      name = "plan"
      type = "string"
    }
    columns {
      name = "claim_start_date"
      type = "date"
    }
    columns {
      name = "claim_end_date"
      type = "date"
    }
    columns {
      name = "claim_line_start_date"
      type = "date"
    }
    columns {
      name = "claim_line_end_date"
      type = "date"
    }
    columns {
      name = "admission_date"
      type = "date"
    }
    columns {
      name = "discharge_date"
      type = "date"
    }
    columns {
      name = "admit_source_code"
      type = "string"
    }
    columns {
      name = "admit_type_code"
      type = "string"
    }
    columns {
      name = "discharge_disposition_code"
      type = "string"
    }
    columns {
      name = "place_of_service_code"
      type = "string"
    }
    columns {
      name = "bill_type_code"
      type = "string"
    }
    columns {
      name = "drg_code_type"
      type = "string"
    }
    columns {
      name = "drg_code"
      type = "string"
    }
    columns {
      name = "revenue_center_code"
      type = "string"
    }
    columns {
      name = "service_unit_quantity"
      type = "double"
    }
    columns {
      name = "hcpcs_code"
      type = "string"
    }
    columns {
      name = "hcpcs_modifier_1"
      type = "string"
    }
    columns {
      name = "hcpcs_modifier_2"
      type = "string"
    }
    columns {
      name = "hcpcs_modifier_3"
      type = "string"
    }
    columns {
      name = "hcpcs_modifier_4"
      type = "string"
    }
    columns {
      name = "hcpcs_modifier_5"
      type = "string"
    }
    columns {
      name = "rendering_npi"
      type = "string"
    }
    columns {
      name = "rendering_tin"
      type = "string"
    }
    columns {
      name = "billing_npi"
      type = "string"
    }
    columns {
      name = "billing_tin"
      type = "string"
    }
    columns {
      name = "facility_npi"
      type = "string"
    }
    columns {
      name = "paid_date"
      type = "date"
    }
    columns {
      name = "paid_amount"
      type = "double"
    }
    columns {
      name = "allowed_amount"
      type = "double"
    }
    columns {
      name = "charge_amount"
      type = "double"
    }
    columns {
      name = "coinsurance_amount"
      type = "double"
    }
    columns {
      name = "copayment_amount"
      type = "double"
    }
    columns {
      name = "deductible_amount"
      type = "double"
    }
    columns {
      name = "total_cost_amount"
      type = "double"
    }
    columns {
      name = "diagnosis_code_type"
      type = "string"
    }
    columns {
      name = "diagnosis_code_1"
      type = "string"
    }
    columns {
      name = "diagnosis_code_2"
      type = "string"
    }
    columns {
      name = "diagnosis_code_3"
      type = "string"
    }
    columns {
      name = "diagnosis_code_4"
      type = "string"
    }
    columns {
      name = "diagnosis_code_5"
      type = "string"
    }
    columns {
      name = "diagnosis_code_6"
      type = "string"
    }
    columns {
      name = "diagnosis_code_7"
      type = "string"
    }
    columns {
      name = "diagnosis_code_8"
      type = "string"
    }
    columns {
      name = "diagnosis_code_9"
      type = "string"
    }
    columns {
      name = "diagnosis_code_10"
      type = "string"
    }
    columns {
      name = "diagnosis_code_11"
      type = "string"
    }
    columns {
      name = "diagnosis_code_12"
      type = "string"
    }
    columns {
      name = "diagnosis_code_13"
      type = "string"
    }
    columns {
      name = "diagnosis_code_14"
      type = "string"
    }
    columns {
      name = "diagnosis_code_15"
      type = "string"
    }
    columns {
      name = "diagnosis_code_16"
      type = "string"
    }
    columns {
      name = "diagnosis_code_17"
      type = "string"
    }
    columns {
      name = "diagnosis_code_18"
      type = "string"
    }
    columns {
      name = "diagnosis_code_19"
      type = "string"
    }
    columns {
      name = "diagnosis_code_20"
      type = "string"
    }
    columns {
      name = "diagnosis_code_21"
      type = "string"
    }
    columns {
      name = "diagnosis_code_22"
      type = "string"
    }
    columns {
      name = "diagnosis_code_23"
      type = "string"
    }
    columns {
      name = "diagnosis_code_24"
      type = "string"
    }
    columns {
      name = "diagnosis_code_25"
      type = "string"
    }
    columns {
      name = "diagnosis_poa_1"
      type = "string"
    }
    columns {
      name = "diagnosis_poa_2"
      type = "string"
    }
    columns {
      name = "diagnosis_poa_3"
      type = "string"
    }
    columns {
      name = "diagnosis_poa_4"
      type = "string"
    }
    columns {
      name = "diagnosis_poa_5"
      type = "string"
    }
    columns {
      name = "diagnosis_poa_6"
      type = "string"
    }
    columns {
      name = "diagnosis_poa_7"
      type = "string"
    }
    columns {
      name = "diagnosis_poa_8"
      type = "string"
    }
    columns {
      name = "diagnosis_poa_9"
      type = "string"
    }
    columns {
      name = "diagnosis_poa_10"
      type = "string"
    }
    columns {
      name = "diagnosis_poa_11"
      type = "string"
    }
    columns {
      name = "diagnosis_poa_12"
      type = "string"
    }
    columns {
      name = "diagnosis_poa_13"
      type = "string"
    }
    columns {
      name = "diagnosis_poa_14"
      type = "string"
    }
    columns {
      name = "diagnosis_poa_15"
      type = "string"
    }
    columns {
      name = "diagnosis_poa_16"
      type = "string"
    }
    columns {
      name = "diagnosis_poa_17"
      type = "string"
    }
    columns {
      name = "diagnosis_poa_18"
      type = "string"
    }
    columns {
      name = "diagnosis_poa_19"
      type = "string"
    }
    columns {
      name = "diagnosis_poa_20"
      type = "string"
    }
    columns {
      name = "diagnosis_poa_21"
      type = "string"
    }
    columns {
      name = "diagnosis_poa_22"
      type = "string"
    }
    columns {
      name = "diagnosis_poa_23"
      type = "string"
    }
    columns {
      name = "diagnosis_poa_24"
      type = "string"
    }
    columns {
      name = "diagnosis_poa_25"
      type = "string"
    }
    columns {
      name = "procedure_code_type"
      type = "string"
    }
    columns {
      name = "procedure_code_1"
      type = "string"
    }
    columns {
      name = "procedure_code_2"
      type = "string"
    }
    columns {
      name = "procedure_code_3"
      type = "string"
    }
    columns {
      name = "procedure_code_4"
      type = "string"
    }
    columns {
      name = "procedure_code_5"
      type = "string"
    }
    columns {
      name = "procedure_code_6"
      type = "string"
    }
    columns {
      name = "procedure_code_7"
      type = "string"
    }
    columns {
      name = "procedure_code_8"
      type = "string"
    }
    columns {
      name = "procedure_code_9"
      type = "string"
    }
    columns {
      name = "procedure_code_10"
      type = "string"
    }
    columns {
      name = "procedure_code_11"
      type = "string"
    }
    columns {
      name = "procedure_code_12"
      type = "string"
    }
    columns {
      name = "procedure_code_13"
      type = "string"
    }
    columns {
      name = "procedure_code_14"
      type = "string"
    }
    columns {
      name = "procedure_code_15"
      type = "string"
    }
    columns {
      name = "procedure_code_16"
      type = "string"
    }
    columns {
      name = "procedure_code_17"
      type = "string"
    }
    columns {
      name = "procedure_code_18"
      type = "string"
    }
    columns {
      name = "procedure_code_19"
      type = "string"
    }
    columns {
      name = "procedure_code_20"
      type = "string"
    }
    columns {
      name = "procedure_code_21"
      type = "string"
    }
    columns {
      name = "procedure_code_22"
      type = "string"
    }
    columns {
      name = "procedure_code_23"
      type = "string"
    }
    columns {
      name = "procedure_code_24"
      type = "string"
    }
    columns {
      name = "procedure_code_25"
      type = "string"
    }
    columns {
      name = "procedure_date_1"
      type = "date"
    }
    columns {
      name = "procedure_date_2"
      type = "date"
    }
    columns {
      name = "procedure_date_3"
      type = "date"
    }
    columns {
      name = "procedure_date_4"
      type = "date"
    }
    columns {
      name = "procedure_date_5"
      type = "date"
    }
    columns {
      name = "procedure_date_6"
      type = "date"
    }
    columns {
      name = "procedure_date_7"
      type = "date"
    }
    columns {
      name = "procedure_date_8"
      type = "date"
    }
    columns {
      name = "procedure_date_9"
      type = "date"
    }
    columns {
      name = "procedure_date_10"
      type = "date"
    }
    columns {
      name = "procedure_date_11"
      type = "date"
    }
    columns {
      name = "procedure_date_12"
      type = "date"
    }
    columns {
      name = "procedure_date_13"
      type = "date"
    }
    columns {
      name = "procedure_date_14"
      type = "date"
    }
    columns {
      name = "procedure_date_15"
      type = "date"
    }
    columns {
      name = "procedure_date_16"
      type = "date"
    }
    columns {
      name = "procedure_date_17"
      type = "date"
    }
    columns {
      name = "procedure_date_18"
      type = "date"
    }
    columns {
      name = "procedure_date_19"
      type = "date"
    }
    columns {
      name = "procedure_date_20"
      type = "date"
    }
    columns {
      name = "procedure_date_21"
      type = "date"
    }
    columns {
      name = "procedure_date_22"
      type = "date"
    }
    columns {
      name = "procedure_date_23"
      type = "date"
    }
    columns {
      name = "procedure_date_24"
      type = "date"
    }
    columns {
      name = "procedure_date_25"
      type = "date"
    }
    columns {
      name = "in_network_flag"
      type = "boolean"
    }
    columns {
      name = "data_source"
      type = "string"
    }
    columns {
      name = "file_name"
      type = "string"
    }
    columns {
      name = "file_date"
      type = "date"
    }
    columns {
      name = "ingest_datetime"
      type = "timestamp"
    }
  }
}

resource "aws_glue_catalog_table" "tuva_pharmacy_claim" {
  name          = "tuva_pharmacy_claim"
  database_name = aws_glue_catalog_database.analytics.name
  description   = "Tuva Project input layer pharmacy_claim: Tuva's column names and types; no rows until NCPDP claims reach the change feed"
  table_type    = "EXTERNAL_TABLE"
  parameters = {
    classification = "parquet"
  }
  storage_descriptor {
    location      = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/tuva_pharmacy_claim/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }
    columns {
      name = "claim_id"
      type = "string"
    }
    columns {
      name = "claim_line_number"
      type = "int"
    }
    columns {
      name = "person_id"
      type = "string"
    }
    columns {
      name = "member_id"
      type = "string"
    }
    columns {
      name = "payer"
      type = "string"
    }
    columns {
      name = "plan"
      type = "string"
    }
    columns {
      name = "prescribing_provider_npi"
      type = "string"
    }
    columns {
      name = "dispensing_provider_npi"
      type = "string"
    }
    columns {
      name = "dispensing_date"
      type = "date"
    }
    columns {
      name = "ndc_code"
      type = "string"
    }
    columns {
      name = "quantity"
      type = "int"
    }
    columns {
      name = "days_supply"
      type = "int"
    }
    columns {
      name = "refills"
      type = "int"
    }
    columns {
      name = "paid_date"
      type = "date"
    }
    columns {
      name = "paid_amount"
      type = "double"
    }
    columns {
      name = "allowed_amount"
      type = "double"
    }
    columns {
      name = "charge_amount"
      type = "double"
    }
    columns {
      name = "coinsurance_amount"
      type = "double"
    }
    columns {
      name = "copayment_amount"
      type = "double"
    }
    columns {
      name = "deductible_amount"
      type = "double"
    }
    columns {
      name = "in_network_flag"
      type = "boolean"
    }
    columns {
      name = "data_source"
      type = "string"
    }
    columns {
      name = "file_name"
      type = "string"
    }
    columns {
      name = "file_date"
      type = "date"
    }
    columns {
      name = "ingest_datetime"
      type = "timestamp"
    }
  }
}

resource "aws_glue_catalog_table" "tuva_eligibility" {
  name          = "tuva_eligibility"
  database_name = aws_glue_catalog_database.analytics.name
  description   = "Tuva Project input layer eligibility: one row per 834 member coverage span, Tuva's column names and types (names, SSN, address, phone and e-mail always empty)"
  table_type    = "EXTERNAL_TABLE"
  parameters = {
    classification = "parquet"
  }
  storage_descriptor {
    location      = "s3://${aws_s3_bucket.analytics.bucket}/clearway/v1/tuva_eligibility/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }
    columns {
      name = "person_id"
      type = "string"
    }
    columns {
      name = "member_id"
      type = "string"
    }
    columns {
      name = "subscriber_id"
      type = "string"
    }
    columns {
      name = "gender"
      type = "string"
    }
    columns {
      name = "race"
      type = "string"
    }
    columns {
      name = "birth_date"
      type = "date"
    }
    columns {
      name = "death_date"
      type = "date"
    }
    columns {
      name = "death_flag"
      type = "boolean"
    }
    columns {
      name = "enrollment_start_date"
      type = "date"
    }
    columns {
      name = "enrollment_end_date"
      type = "date"
    }
    columns {
      name = "payer"
      type = "string"
    }
    columns {
      name = "payer_type"
      type = "string"
    }
    columns {
      name = "plan"
      type = "string"
    }
    columns {
      name = "original_reason_entitlement_code"
      type = "string"
    }
    columns {
      name = "dual_status_code"
      type = "string"
    }
    columns {
      name = "medicare_status_code"
      type = "string"
    }
    columns {
      name = "enrollment_status"
      type = "string"
    }
    columns {
      name = "hospice_flag"
      type = "string"
    }
    columns {
      name = "institutional_snp_flag"
      type = "string"
    }
    columns {
      name = "long_term_institutional_flag"
      type = "string"
    }
    columns {
      name = "group_id"
      type = "string"
    }
    columns {
      name = "group_name"
      type = "string"
    }
    columns {
      name = "name_suffix"
      type = "string"
    }
    columns {
      name = "first_name"
      type = "string"
    }
    columns {
      name = "middle_name"
      type = "string"
    }
    columns {
      name = "last_name"
      type = "string"
    }
    columns {
      name = "social_security_number"
      type = "string"
    }
    columns {
      name = "subscriber_relation"
      type = "string"
    }
    columns {
      name = "address"
      type = "string"
    }
    columns {
      name = "city"
      type = "string"
    }
    columns {
      name = "state"
      type = "string"
    }
    columns {
      name = "zip_code"
      type = "string"
    }
    columns {
      name = "phone"
      type = "string"
    }
    columns {
      name = "email"
      type = "string"
    }
    columns {
      name = "ethnicity"
      type = "string"
    }
    columns {
      name = "data_source"
      type = "string"
    }
    columns {
      name = "file_name"
      type = "string"
    }
    columns {
      name = "file_date"
      type = "date"
    }
    columns {
      name = "ingest_datetime"
      type = "timestamp"
    }
  }
}
