//! # terraform-provider-slipway
//!
//! The Slipway Terraform provider: `slipway_environment` and `slipway_application`
//! resources (and data sources of the same names), deployed to a [`runtime`]: the
//! embedded local runtime by default, or Kubernetes.

pub mod client;
pub mod data_sources;
pub mod provider;
pub mod resources;
pub mod run_labels;

/// The runtimes (the `slipway-runtime` crate), under the path the provider has always
/// used for them: `slipway_provider::runtime::...`.
pub use slipway_runtime as runtime;
