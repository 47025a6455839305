//! go-plugin's own services beside the provider: `GRPCController` (Terraform calls
//! `Shutdown` when it is done with the plugin, and waits for the process to exit) and
//! `GRPCStdio` (a stream go-plugin opens to relay the plugin's output; our logs go to
//! stderr, which go-plugin already reads, so the stream stays open and quiet).

use std::pin::Pin;

use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::proto::plugin as pb;

/// Ends the server when Terraform calls `Shutdown`.
pub struct Controller {
    pub shutdown: CancellationToken,
}

#[tonic::async_trait]
impl pb::grpc_controller_server::GrpcController for Controller {
    async fn shutdown(&self, _request: Request<pb::Empty>) -> Result<Response<pb::Empty>, Status> {
        tracing::debug!("Terraform asked the plugin to shut down");
        self.shutdown.cancel();
        Ok(Response::new(pb::Empty {}))
    }
}

/// Keeps go-plugin's stdio stream open until shutdown, sending nothing.
pub struct Stdio {
    pub shutdown: CancellationToken,
}

type StdioStream = Pin<Box<dyn Stream<Item = Result<pb::StdioData, Status>> + Send>>;

#[tonic::async_trait]
impl pb::grpc_stdio_server::GrpcStdio for Stdio {
    type StreamStdioStream = StdioStream;

    async fn stream_stdio(
        &self,
        _request: Request<()>,
    ) -> Result<Response<Self::StreamStdioStream>, Status> {
        let shutdown = self.shutdown.clone();
        let stream = futures::stream::once(async move {
            shutdown.cancelled().await;
        })
        .filter_map(|()| async { None });
        Ok(Response::new(Box::pin(stream)))
    }
}

use futures::StreamExt;
