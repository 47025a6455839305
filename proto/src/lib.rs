//! Slipway's platform API, generated from `slipway_runtime.proto`: the runtime daemon
//! serves it, the provider and slipway-agent call it. One crate, so that both sides
//! are built from the same file and cannot drift.

/// `slipway.runtime.v1`: environments, applications, the platform's checks and audit.
#[allow(clippy::all, missing_docs)]
pub mod runtime {
    tonic::include_proto!("slipway.runtime.v1");
}
