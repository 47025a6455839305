//! What every resource and data source operation receives from `configure`. Apart
//! from [`crate::provider`], which builds it and lists the resources, so that the
//! resources can name it without importing the provider that imports them.

use std::sync::Arc;

use crate::provenance::{Policy, RunProvenance};
use crate::runtime::Runtime;

/// What every resource operation receives: the runtime, the policy, and who is making
/// this run's changes.
pub struct SlipwayClient {
    pub runtime: Arc<dyn Runtime>,
    pub policy: Policy,
    pub provenance: RunProvenance,
}
