//! What every resource and data source operation receives from `configure`. Apart
//! from [`crate::provider`], which builds it and lists the resources, so that the
//! resources can name it without importing the provider that imports them.

use std::sync::Arc;

use crate::run_labels::RunLabels;
use crate::runtime::Runtime;

/// What every resource operation receives: the runtime (the platform, which decides
/// every change), and what this run says about itself.
pub struct SlipwayClient {
    pub runtime: Arc<dyn Runtime>,
    pub labels: RunLabels,
}
