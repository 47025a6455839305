//! # terraform-provider-slipway
//!
//! The Slipway Terraform provider: `slipway_environment` and `slipway_application`
//! resources (and data sources of the same names), deployed to a [`runtime`]: the
//! embedded local runtime by default, or Kubernetes.

pub mod data_sources;
pub mod provenance;
pub mod provider;
pub mod resources;
pub mod runtime;
