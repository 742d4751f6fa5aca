# ECS Fargate: intake (HTTP intake, fast path, MLLP) and workers, from one
# image, each with its own task role. Partners reach intake through an ALB
# (HTTPS, TLS 1.2+) and MLLP through an NLB (TLS 1.2+, terminated there);
# tasks live in private subnets.

resource "aws_ecs_cluster" "main" {
  name = local.prefix
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_cloudwatch_log_group" "services" {
  name              = "/clearway/${local.prefix}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.data.arn
}

locals {
  # What every task is told: the resources by URL and ARN (no lookups), the
  # KMS key for payload puts, and the master key from Secrets Manager.
  environment = [
    { name = "CLEARWAY__BACKEND__KIND", value = "aws" },
    { name = "CLEARWAY__BACKEND__BUCKET", value = aws_s3_bucket.payloads.id },
    { name = "CLEARWAY__BACKEND__QUEUE", value = aws_sqs_queue.work.url },
    { name = "CLEARWAY__BACKEND__DEAD_LETTER_QUEUE", value = aws_sqs_queue.dead_letters.url },
    { name = "CLEARWAY__BACKEND__TOPIC", value = aws_sns_topic.acks.arn },
    { name = "CLEARWAY__BACKEND__TABLE", value = aws_dynamodb_table.state.name },
    { name = "CLEARWAY__BACKEND__AUDIT_TABLE", value = aws_dynamodb_table.audit.name },
    { name = "CLEARWAY__BACKEND__AUDIT_BUCKET", value = aws_s3_bucket.audit_checkpoints.id },
    { name = "CLEARWAY__BACKEND__KMS_KEY_ID", value = aws_kms_key.data.arn },
    { name = "CLEARWAY__ANALYTICS__DESTINATION", value = "s3://${aws_s3_bucket.analytics.id}/clearway" },
    { name = "CLEARWAY__ANALYTICS__KMS_KEY_ID", value = aws_kms_key.data.arn },
    { name = "CLEARWAY__BACKEND__PARTITION_SHARDS", value = tostring(var.partition_shards) },
    { name = "CLEARWAY__WORKERS__MAX_ATTEMPTS", value = tostring(var.max_attempts) },
    { name = "CLEARWAY__SERVER__LISTEN", value = "0.0.0.0:8080" },
    # TLS ends at the load balancers (ALB: HTTPS; NLB: TLS for MLLP), so the
    # tasks serve plaintext inside the VPC, which serve refuses unless told.
    { name = "CLEARWAY__TLS__ALLOW_PLAINTEXT", value = "true" },
    { name = "CLEARWAY__SERVER__DATA_DIR", value = "/tmp/clearway" },
    { name = "AWS_REGION", value = local.region },
  ]
  secrets = [
    { name = "CLEARWAY__SECURITY__MASTER_KEY", valueFrom = aws_secretsmanager_secret.master_key.arn },
  ]
  # Only the tasks that answer requests sign audit checkpoints.
  audit_secrets = [
    { name = "CLEARWAY__SECURITY__AUDIT_KEY", valueFrom = aws_secretsmanager_secret.audit_key.arn },
  ]
  roles = {
    intake = { task_role = aws_iam_role.intake.arn, count = var.intake_count, mllp = true }
    worker = { task_role = aws_iam_role.worker.arn, count = var.worker_count, mllp = false }
  }
}

resource "aws_ecs_task_definition" "role" {
  for_each                 = local.roles
  family                   = "${local.prefix}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 1024
  memory                   = 2048
  task_role_arn            = each.value.task_role
  execution_role_arn       = aws_iam_role.execution.arn
  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "ARM64"
  }
  volume {
    name = "scratch"
  }
  container_definitions = jsonencode([{
    name                   = each.key
    image                  = var.image
    essential              = true
    user                   = "10001:10001"
    readonlyRootFilesystem = true
    command = concat(
      ["serve", "--backend", "aws", "--role", each.key],
      each.value.mllp ? ["--mllp-listen", "0.0.0.0:2575"] : []
    )
    environment = local.environment
    secrets     = each.key == "worker" ? local.secrets : concat(local.secrets, local.audit_secrets)
    portMappings = concat(
      [{ containerPort = 8080, protocol = "tcp" }],
      each.value.mllp ? [{ containerPort = 2575, protocol = "tcp" }] : []
    )
    mountPoints = [{ sourceVolume = "scratch", containerPath = "/tmp/clearway" }]
    # SIGTERM: Clearway stops taking work and finishes what it holds.
    stopTimeout = 120
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.services.name
        awslogs-region        = local.region
        awslogs-stream-prefix = each.key
      }
    }
  }])
}

resource "aws_security_group" "alb" {
  name        = "${local.prefix}-alb"
  description = "Clearway public load balancers: HTTPS and MLLP over TLS from partner networks"
  vpc_id      = var.vpc_id
  ingress {
    description = "HTTPS from partners"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = var.allowed_cidrs
  }
  ingress {
    description = "MLLP over TLS from partners"
    from_port   = 2575
    to_port     = 2575
    protocol    = "tcp"
    cidr_blocks = var.allowed_cidrs
  }
  egress {
    description = "To the tasks"
    from_port   = 2575
    to_port     = 8080
    protocol    = "tcp"
    cidr_blocks = [data.aws_vpc.main.cidr_block]
  }
}

data "aws_vpc" "main" {
  id = var.vpc_id
}

resource "aws_security_group" "tasks" {
  name        = "${local.prefix}-tasks"
  description = "Clearway tasks: HTTP and MLLP from the load balancers only"
  vpc_id      = var.vpc_id
  ingress {
    description     = "HTTP from the ALB"
    from_port       = 8080
    to_port         = 8080
    protocol        = "tcp"
    security_groups = [aws_security_group.alb.id]
  }
  ingress {
    description = "MLLP from the NLB (inside the VPC)"
    from_port   = 2575
    to_port     = 2575
    protocol    = "tcp"
    cidr_blocks = [data.aws_vpc.main.cidr_block]
  }
  egress {
    description = "HTTPS to AWS APIs and payer endpoints"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_lb" "http" {
  name                       = "${local.prefix}-http"
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = var.public_subnet_ids
  security_groups            = [aws_security_group.alb.id]
  drop_invalid_header_fields = true
  enable_deletion_protection = true
  access_logs {
    bucket  = aws_s3_bucket.access_logs.id
    prefix  = "alb"
    enabled = true
  }
  # checkov:skip=CKV2_AWS_28: A WAF's rules are the deployment's own choice (partner allow-lists already restrict who connects); attach one with aws_wafv2_web_acl_association.
}

resource "aws_lb_target_group" "intake" {
  name        = "${local.prefix}-intake"
  port        = 8080
  protocol    = "HTTP"
  target_type = "ip"
  vpc_id      = var.vpc_id
  # Deregistration waits for requests in flight to be answered.
  deregistration_delay = 60
  health_check {
    path    = "/readyz"
    matcher = "200"
  }
  # checkov:skip=CKV_AWS_378: TLS ends at the ALB; ALB to task traffic stays inside the VPC's private subnets, restricted by security group.
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.http.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.intake.arn
  }
}

resource "aws_lb" "mllp" {
  name                             = "${local.prefix}-mllp"
  load_balancer_type               = "network"
  internal                         = false
  subnets                          = var.public_subnet_ids
  security_groups                  = [aws_security_group.alb.id]
  enable_cross_zone_load_balancing = true
  enable_deletion_protection       = true
  access_logs {
    bucket  = aws_s3_bucket.access_logs.id
    prefix  = "alb"
    enabled = true
  }
}

resource "aws_lb_target_group" "mllp" {
  name        = "${local.prefix}-mllp"
  port        = 2575
  protocol    = "TCP"
  target_type = "ip"
  vpc_id      = var.vpc_id
  health_check {
    protocol = "TCP"
  }
}

resource "aws_lb_listener" "mllp" {
  load_balancer_arn = aws_lb.mllp.arn
  port              = 2575
  protocol          = "TLS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.mllp.arn
  }
}

resource "aws_ecs_service" "role" {
  for_each               = local.roles
  name                   = each.key
  cluster                = aws_ecs_cluster.main.id
  task_definition        = aws_ecs_task_definition.role[each.key].arn
  desired_count          = each.value.count
  launch_type            = "FARGATE"
  enable_execute_command = false
  propagate_tags         = "SERVICE"
  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }
  dynamic "load_balancer" {
    for_each = each.key == "intake" ? [1] : []
    content {
      target_group_arn = aws_lb_target_group.intake.arn
      container_name   = "intake"
      container_port   = 8080
    }
  }
  dynamic "load_balancer" {
    for_each = each.value.mllp ? [1] : []
    content {
      target_group_arn = aws_lb_target_group.mllp.arn
      container_name   = each.key
      container_port   = 2575
    }
  }
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
  depends_on = [aws_lb_listener.https, aws_lb_listener.mllp]
}
