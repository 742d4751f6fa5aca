# Clearway on AWS: the design card's S3 -> SQS -> workers -> DynamoDB -> SNS,
# with intake, worker and fast-path processes as separate ECS Fargate
# services behind one ALB (TLS 1.2+), each with its own least-privilege role.
#
# Resource names match `clearway aws bootstrap` (the development stand-in)
# and the defaults of the `backend.*` settings, so one configuration serves
# both. `scripts/test` runs checkov over this directory: 0 failed checks,
# every deliberate skip has its reason written next to it.

terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.60"
    }
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = {
      Application = "clearway"
      Environment = var.environment
      DataClass   = "phi"
    }
  }
}

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}
