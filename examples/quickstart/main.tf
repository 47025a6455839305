# Slipway quickstart: an environment with two applications on the local runtime.
#
#   cargo build -p terraform-provider-slipway -p slipway-tests --bins
#   terraform apply -var demo_app=$PWD/target/debug/slipway-demo-app
#   curl "$(terraform output -raw web_endpoint)"
#
# With the provider built locally, point Terraform at it with a dev_overrides block for
# "slipway/slipway" in your CLI configuration (TF_CLI_CONFIG_FILE).

terraform {
  required_providers {
    slipway = { source = "slipway/slipway" }
  }
}

# The local runtime is the default; its home is $SLIPWAY_HOME or ~/.local/share/slipway.
provider "slipway" {}

variable "demo_app" {
  description = "The slipway-demo-app program (an absolute path, or a name on PATH)."
  type        = string
  default     = "slipway-demo-app"
}

variable "web_version" {
  description = "What the web application answers on GET /; change it to roll out a new version."
  type        = string
  default     = "v1"
}

resource "slipway_environment" "demo" {
  name = "demo"
  mode = "DEVELOPMENT"

  variables = {
    GREETING = "hello"
  }
  secrets = {
    DATABASE_PASSWORD = "change-me"
  }
}

resource "slipway_application" "web" {
  environment_id = slipway_environment.demo.id
  name           = "web"
  command        = var.demo_app
  replicas       = 2

  ports = [
    { name = "http", port = 8080, public = true },
  ]
  variables = {
    APP_VERSION = var.web_version
  }
  healthcheck = {
    type     = "http"
    path     = "/healthz"
    port     = 8080
    interval = "1s"
    timeout  = "1s"
  }
}

resource "slipway_application" "api" {
  environment_id = slipway_environment.demo.id
  name           = "api"
  command        = var.demo_app
  replicas       = 1

  ports = [
    { name = "http", port = 9090, public = true },
  ]
  variables = {
    APP_VERSION = "api-v1"
  }
  healthcheck = {
    type     = "tcp"
    port     = 9090
    interval = "1s"
  }
}

data "slipway_application" "web" {
  environment_id = slipway_environment.demo.id
  name           = slipway_application.web.name
  depends_on     = [slipway_application.web]
}

output "web_endpoint" {
  value = slipway_application.web.endpoints["http"]
}

output "api_endpoint" {
  value = slipway_application.api.endpoints["http"]
}

output "web_provenance" {
  value = data.slipway_application.web.provenance
}
