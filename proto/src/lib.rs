//! Slipway's platform API, generated from `slipway_runtime.proto`: the runtime daemon
//! serves it, the provider and slipway-agent call it. One crate, so that both sides
//! are built from the same file and cannot drift.

/// `slipway.runtime.v1`: environments, applications, the platform's checks and audit.
#[allow(clippy::all, missing_docs)]
pub mod runtime {
    tonic::include_proto!("slipway.runtime.v1");
}

use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// A channel to the platform's Unix socket at `path`.
pub async fn connect_unix(path: PathBuf) -> Result<Channel, tonic::transport::Error> {
    // The URI is required by the API but unused: the connector dials the socket.
    Endpoint::from_static("http://local-runtime.invalid")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
}
