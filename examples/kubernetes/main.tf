# Slipway on Kubernetes: an environment (a Namespace) with a web server and an echo
# service, each a Deployment with a Service, through the Slipway platform. See README.md
# in this directory.

terraform {
  required_providers {
    slipway = { source = "slipway/slipway" }
  }
}

variable "environment_name" {
  description = "The environment, and so the Namespace, to deploy into."
  type        = string
  default     = "shop"
}

variable "database_password" {
  description = "Handed to the web application as the secret DATABASE_PASSWORD."
  type        = string
  sensitive   = true
  default     = "change-me"
}

variable "session_key" {
  description = "Handed to the web application as the secret SESSION_KEY."
  type        = string
  sensitive   = true
  default     = "change-me-too"
}

# The provider reaches the cluster only through the Slipway platform, which holds the
# kubeconfig (`runtime serve --backend kubernetes`): at SLIPWAY_HOME's socket here, or
# at a team's `endpoint` with a `token`.
provider "slipway" {
  runtime = "kubernetes"
}

resource "slipway_environment" "shop" {
  name = var.environment_name
  mode = "STAGING"

  variables = {
    REGION = "eu-west"
  }
  secrets = {
    DATABASE_PASSWORD = var.database_password
  }
}

resource "slipway_application" "web" {
  environment_id = slipway_environment.shop.id
  name           = "web"
  image          = "nginxinc/nginx-unprivileged:1.27"
  replicas       = 2

  ports = [
    { name = "http", port = 8080, public = true },
  ]
  variables = {
    LOG_LEVEL = "info"
  }
  secrets = {
    SESSION_KEY = var.session_key
  }
  healthcheck = {
    type     = "http"
    path     = "/"
    port     = 8080
    interval = "5s"
    timeout  = "2s"
  }
  resources = {
    cpu    = "250m"
    memory = "128Mi"
  }
  timeouts = {
    create = "5m"
    update = "5m"
  }
}

resource "slipway_application" "echo" {
  environment_id = slipway_environment.shop.id
  name           = "echo"
  image          = "hashicorp/http-echo:1.0"
  command        = "/http-echo"
  args           = ["-listen=:5678", "-text=hello from slipway"]
  replicas       = 1

  ports = [
    { name = "http", port = 5678, public = true },
  ]
  healthcheck = {
    type = "tcp"
    port = 5678
  }
  resources = {
    cpu    = "100m"
    memory = "32Mi"
  }
}

output "web_endpoint" {
  value = slipway_application.web.endpoints["http"]
}

output "echo_endpoint" {
  value = slipway_application.echo.endpoints["http"]
}
