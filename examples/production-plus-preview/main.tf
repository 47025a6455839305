# Production that changes only through a merge, and a preview environment per branch
# or pull request, from one configuration. See README.md in this directory.
#
#   preview_name = ""       (the default): the PRODUCTION environment. Only
#                           slipway-agent's merge jobs can change it.
#   preview_name = "pr-42": a PREVIEW environment of that name, which anyone may apply.
#
# Use one Terraform state per preview (a workspace each), apart from production's.

terraform {
  required_providers {
    slipway = { source = "slipway/slipway" }
  }

  # slipway-agent deletes each job's work tree, so production's state must live in a
  # backend outside the repository, for example:
  #
  # backend "local" {
  #   path          = "/var/lib/slipway/state/shop.tfstate"
  #   workspace_dir = "/var/lib/slipway/state/workspaces"
  # }
}

variable "preview_name" {
  description = "Empty for production; otherwise the preview environment's name, a DNS label such as \"pr-42\"."
  type        = string
  default     = ""

  validation {
    condition     = var.preview_name == "" || (var.preview_name != "production" && can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.preview_name)))
    error_message = "The preview_name must be empty (production) or a DNS label other than \"production\": 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit, like \"pr-42\"."
  }
}

variable "app_command" {
  description = "The program the local runtime runs (for example the path of target/debug/slipway-demo-app)."
  type        = string
  default     = "slipway-demo-app"
}

variable "app_version" {
  description = "What the application answers on GET /; a change is a rollout."
  type        = string
  default     = "v1"
}

# No production setting here: the Slipway platform decides who may change what, from
# its own configuration (platform.toml), which no Terraform configuration reaches. Only
# slipway-agent's merge jobs may change the PRODUCTION environment.
provider "slipway" {}

locals {
  preview = var.preview_name != ""
}

resource "slipway_environment" "production" {
  count = local.preview ? 0 : 1

  name = "production"
  mode = "PRODUCTION"
  variables = {
    LOG_LEVEL = "warn"
  }
}

resource "slipway_environment" "preview" {
  count = local.preview ? 1 : 0

  name = var.preview_name
  mode = "PREVIEW"
  variables = {
    LOG_LEVEL = "debug"
  }
}

locals {
  environment_id = local.preview ? slipway_environment.preview[0].id : slipway_environment.production[0].id
}

resource "slipway_application" "web" {
  environment_id = local.environment_id
  name           = "web"
  command        = var.app_command
  replicas       = local.preview ? 1 : 3

  ports = [
    { name = "http", port = 8080, public = true },
  ]
  variables = {
    APP_VERSION = var.app_version
  }
  healthcheck = {
    type     = "http"
    path     = "/healthz"
    port     = 8080
    interval = "2s"
  }
}

# Read after the apply: which commit runs, who merged it, and whether the platform took
# the record from the agent's job credential (verified).
data "slipway_application" "web" {
  environment_id = local.environment_id
  name           = slipway_application.web.name
  depends_on     = [slipway_application.web]
}

output "environment" {
  value = local.preview ? var.preview_name : "production"
}

output "web_endpoint" {
  value = slipway_application.web.endpoints["http"]
}

output "web_provenance" {
  value = data.slipway_application.web.provenance
}
