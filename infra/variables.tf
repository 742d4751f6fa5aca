variable "region" {
  description = "AWS region."
  type        = string
  default     = "us-east-1"
}

variable "environment" {
  description = "Environment name (prod, staging, ...), part of every resource name."
  type        = string
  default     = "prod"
}

variable "name" {
  description = "Name prefix of every resource (the `backend.*` names are <name>-payloads, <name>-work, ...)."
  type        = string
  default     = "clearway"
}

variable "vpc_id" {
  description = "VPC the services run in."
  type        = string
}

variable "public_subnet_ids" {
  description = "Subnets of the internet-facing load balancers."
  type        = list(string)
}

variable "private_subnet_ids" {
  description = "Subnets of the Fargate tasks (no public IPs; reach AWS through NAT or VPC endpoints)."
  type        = list(string)
}

variable "allowed_cidrs" {
  description = "Networks partners connect from (clearinghouses, pharmacies): the load balancers accept only these."
  type        = list(string)
}

variable "certificate_arn" {
  description = "ACM certificate of the public host name (HTTPS and MLLP over TLS)."
  type        = string
}

variable "image" {
  description = "The clearway container image (one image, every role)."
  type        = string
}

variable "image_repository_arn" {
  description = "ARN of the ECR repository the image comes from (the tasks may pull only from it)."
  type        = string
}

variable "intake_count" {
  description = "Intake tasks."
  type        = number
  default     = 2
}

variable "worker_count" {
  description = "Worker tasks."
  type        = number
  default     = 2
}

variable "fastpath_count" {
  description = "Fast-path tasks."
  type        = number
  default     = 2
}

variable "log_retention_days" {
  description = "CloudWatch log retention (logs carry ids only, never PHI; HIPAA keeps audit records 6 years elsewhere)."
  type        = number
  default     = 365
}

variable "payload_retention_days" {
  description = "Days raw payloads are kept before expiring (noncurrent versions expire 30 days later)."
  type        = number
  default     = 2555
}

variable "audit_retention_days" {
  description = "Days each audit checkpoint stays locked (S3 Object Lock, COMPLIANCE mode: nobody can delete or shorten it). HIPAA keeps documentation six years."
  type        = number
  default     = 2190
  validation {
    condition     = var.audit_retention_days >= 1
    error_message = "At least one day."
  }
}

variable "max_attempts" {
  description = "workers.max_attempts; SQS redrives after max_attempts + 2 receives, so Clearway dead-letters first, with its reason."
  type        = number
  default     = 5
}

variable "partition_shards" {
  description = "backend.partition_shards: partition keys a hot partner's items are spread over. Fixed for the table's life."
  type        = number
  default     = 8
}

variable "alarm_emails" {
  description = "Who is told when an alarm fires."
  type        = list(string)
  default     = []
}

variable "partner_kms_keys" {
  description = "Partner ids that get an AWS KMS key of their own for their key-encryption keys (`clearway keys rotate --partner P --kms-key-id alias/<name>-<environment>-partner-P`). Removing a partner schedules its key's deletion: its data is then erased for good, backups included."
  type        = set(string)
  default     = []
  validation {
    condition     = alltrue([for p in var.partner_kms_keys : can(regex("^[A-Za-z0-9._-]{1,64}$", p))])
    error_message = "Partner ids are 1 to 64 letters, digits, '.', '_' or '-'."
  }
}

variable "partner_kms_deletion_window_days" {
  description = "Days between removing a partner from partner_kms_keys and its key's deletion (7 to 30); the key is unusable from the start."
  type        = number
  default     = 7
  validation {
    condition     = var.partner_kms_deletion_window_days >= 7 && var.partner_kms_deletion_window_days <= 30
    error_message = "KMS allows 7 to 30 days."
  }
}
