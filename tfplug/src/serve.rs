//! The plugin process: from `main` to a served provider and a clean exit.
//!
//! In normal mode Terraform starts the binary: the handshake is checked, AutoMTLS set
//! up, the handshake line printed, and the provider served until Terraform calls
//! `GRPCController.Shutdown`. With `--debug` a person starts it: it serves without TLS
//! and prints the `TF_REATTACH_PROVIDERS` value that attaches Terraform to it, which is
//! how one runs a provider under a debugger.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

use crate::controller::{Controller, Stdio};
use crate::handshake::{self, Environment, HandshakeError, ProcessEnvironment};
use crate::proto::plugin::grpc_controller_server::GrpcControllerServer;
use crate::proto::plugin::grpc_stdio_server::GrpcStdioServer;
use crate::proto::tfplugin6::provider_server::ProviderServer;
use crate::provider::Provider;
use crate::server::ProviderService;
use crate::tls;

/// Terraform sends whole states in one message; gRPC's 4 MiB default is too small for
/// large configurations.
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// How the provider presents itself.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The provider's source address, as in `required_providers`
    /// (`registry.terraform.io/slipway/slipway`); used for the debug reattach line.
    pub address: String,
    /// What else the binary does when run by hand (its own subcommands), shown at the
    /// end of `--help`.
    pub more_help: Option<String>,
}

impl ServeOptions {
    pub fn new(address: impl Into<String>) -> ServeOptions {
        ServeOptions {
            address: address.into(),
            more_help: None,
        }
    }

    /// Adds `text` to `--help`: the commands a person may run this binary with.
    pub fn more_help(mut self, text: impl Into<String>) -> ServeOptions {
        self.more_help = Some(text.into());
        self
    }
}

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("could not write the handshake line: {0}")]
    Stdout(#[from] std::io::Error),
}

/// Runs the provider as a Terraform plugin and returns the process exit code: call it
/// from `main`. Understands `--debug`, `--help` and `--version`.
pub fn serve<P: Provider>(provider: P, options: ServeOptions) -> ExitCode {
    install_panic_hook();
    init_logging();
    let debug = match parse_args(&options) {
        Ok(Some(debug)) => debug,
        Ok(None) => return ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        if debug {
            serve_debug(provider, &options).await
        } else {
            serve_plugin(&ProcessEnvironment, provider, |line| {
                let mut stdout = std::io::stdout().lock();
                writeln!(stdout, "{line}")?;
                stdout.flush()
            })
            .await
        }
    });
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `Some(debug)` to serve, `None` when a flag like `--help` was answered.
fn parse_args(options: &ServeOptions) -> Result<Option<bool>, String> {
    let mut debug = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--debug" => debug = true,
            "-h" | "--help" => {
                println!(
                    "Terraform provider {}\n\n\
                     Terraform starts this binary itself; you do not run it by hand.\n\n\
                     Options:\n  --debug    serve without Terraform starting it, and print the\n             TF_REATTACH_PROVIDERS value that attaches Terraform to it\n  --version  print the version\n  --help     print this help",
                    options.address
                );
                if let Some(more) = &options.more_help {
                    println!("\n{more}");
                }
                return Ok(None);
            }
            "--version" | "-V" => {
                println!("{} {}", options.address, env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            other => return Err(format!("unknown argument {other:?}; try --help")),
        }
    }
    Ok(Some(debug))
}

/// Serves as Terraform expects when it starts the plugin: handshake, AutoMTLS, then
/// until `Shutdown`. `announce` receives the handshake line and must print it.
pub async fn serve_plugin<P: Provider>(
    env: &(dyn Environment + Sync),
    provider: P,
    announce: impl FnOnce(&str) -> std::io::Result<()>,
) -> Result<(), ServeError> {
    // Taken before the handshake: Terraform is alive at least until it reads the line.
    #[cfg(unix)]
    let parent = std::os::unix::process::parent_id();
    handshake::check_magic_cookie(env)?;
    handshake::negotiate_protocol(env)?;
    let client_cert = env
        .get("PLUGIN_CLIENT_CERT")
        .filter(|c| !c.trim().is_empty())
        .ok_or(HandshakeError::MissingClientCertificate)?;
    let mtls = tls::auto_mtls(&client_cert)?;
    let listener = handshake::listen(handshake::port_range(env)?).await?;
    let address = local_address(&listener)?;
    announce(&handshake::handshake_line(
        address,
        Some(&mtls.certificate_der),
    ))?;

    let shutdown = CancellationToken::new();
    ignore_interrupts();
    #[cfg(unix)]
    exit_with_parent(parent, &shutdown);
    let incoming = tls_incoming(listener, mtls.server_config);
    run_until_shutdown(router(provider, &shutdown), incoming, &shutdown).await
}

async fn serve_debug<P: Provider>(provider: P, options: &ServeOptions) -> Result<(), ServeError> {
    let listener = handshake::listen(None).await?;
    let address = local_address(&listener)?;
    println!(
        "Provider {} is running in debug mode. To attach Terraform, export:\n\n    TF_REATTACH_PROVIDERS='{}'\n\nthen run terraform in another shell. Stop with Ctrl-C.",
        options.address,
        handshake::reattach_config(&options.address, address, std::process::id())
    );
    let shutdown = CancellationToken::new();
    let on_ctrl_c = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_ctrl_c.cancel();
    });
    let incoming = TcpListenerStream::new(listener).map(|tcp| {
        if let Ok(tcp) = &tcp {
            prepare_connection(tcp);
        }
        tcp
    });
    run_until_shutdown(router(provider, &shutdown), incoming, &shutdown).await
}

fn local_address(listener: &TcpListener) -> Result<SocketAddr, ServeError> {
    listener
        .local_addr()
        .map_err(|e| HandshakeError::Listen(e.to_string()).into())
}

fn router<P: Provider>(
    provider: P,
    shutdown: &CancellationToken,
) -> tonic::transport::server::Router {
    let provider = ProviderServer::new(ProviderService::new(provider))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let (health_reporter, health) = tonic_health::server::health_reporter();
    // go-plugin's health check asks for the service named "plugin".
    tokio::spawn(async move {
        health_reporter
            .set_service_status("plugin", tonic_health::ServingStatus::Serving)
            .await;
    });
    Server::builder()
        .add_service(provider)
        .add_service(GrpcControllerServer::new(Controller {
            shutdown: shutdown.clone(),
        }))
        .add_service(GrpcStdioServer::new(Stdio {
            shutdown: shutdown.clone(),
        }))
        .add_service(health)
}

/// The longest a shut-down server waits for its connections to finish their replies
/// (the `Shutdown` reply among them) before the process exits anyway.
const DRAIN_LIMIT: Duration = Duration::from_millis(250);

/// Serves until shutdown, then drains: the server stops accepting, in-flight replies
/// (the `Shutdown` reply, the stdio stream's end) are sent, and the connections close.
/// Terraform waits for the plugin process to exit after `Shutdown`, so every
/// millisecond spent here is one Terraform waits, three times per plan (one plugin
/// process for the schema, for validate and for plan each); [`DRAIN_LIMIT`] caps it
/// should a connection not finish.
async fn run_until_shutdown<I, IO, IE>(
    router: tonic::transport::server::Router,
    incoming: I,
    shutdown: &CancellationToken,
) -> Result<(), ServeError>
where
    I: tokio_stream::Stream<Item = Result<IO, IE>>,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    IO::ConnectInfo: Clone + Send + Sync + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let server = router.serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
    tokio::select! {
        result = server => result.map_err(ServeError::from),
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(DRAIN_LIMIT).await;
        } => Ok(()),
    }
}

/// Accepts TCP connections and completes each TLS handshake in its own task, so that
/// one slow or hostile client cannot hold up the others. Refused handshakes (for
/// example, a client without Terraform's certificate) are logged and dropped.
///
/// Each connection gets `TCP_NODELAY` (see [`prepare_connection`]).
fn tls_incoming(
    listener: TcpListener,
    config: std::sync::Arc<rustls::ServerConfig>,
) -> ReceiverStream<Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>, std::io::Error>>
{
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("accepting a connection failed: {e}");
                    continue;
                }
            };
            prepare_connection(&tcp);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(stream) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Err(e) => tracing::warn!("refused a connection from {peer}: {e}"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Turns off Nagle's algorithm. gRPC writes a reply as several small TLS records
/// (headers, data, trailers); with Nagle on, the kernel holds back the later ones until
/// Terraform acknowledges the first, and Terraform's kernel delays that acknowledgement
/// by up to 40 ms, so one RPC in a few took 40 ms instead of tens of microseconds.
/// tonic sets this on listeners it opens itself, not on a stream of connections
/// handed to it, as ours are.
fn prepare_connection(tcp: &tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!("could not set TCP_NODELAY: {e}");
    }
}

/// Ends the server when the Terraform that started it is gone. A crashed Terraform
/// never calls `Shutdown`, and a plugin left running would hold its output pipes open,
/// so whatever waits for Terraform's output (a CI job, a script) would wait forever.
/// Polling the parent pid is enough: it changes when the parent exits and the plugin
/// is adopted by init or a subreaper.
#[cfg(unix)]
fn exit_with_parent(parent: u32, shutdown: &CancellationToken) {
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if std::os::unix::process::parent_id() != parent {
                tracing::warn!(
                    "Terraform (pid {parent}) exited without shutting the plugin down; exiting"
                );
                shutdown.cancel();
                return;
            }
        }
    });
}

/// Terraform relays Ctrl-C to its plugins' process group, then asks them to stop over
/// gRPC (`StopProvider`); the signal itself must not kill the plugin mid-operation.
fn ignore_interrupts() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut interrupts) = signal(SignalKind::interrupt()) {
            tokio::spawn(async move {
                while interrupts.recv().await.is_some() {
                    tracing::debug!("ignoring SIGINT; Terraform sends StopProvider instead");
                }
            });
        }
    }
}

/// Logs go to stderr, which go-plugin relays into Terraform's log (`TF_LOG`). The level
/// comes from `TFPLUG_LOG` (an env-filter directive), default `info`.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TFPLUG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// Replaces Rust's panic output with one line and no backtrace. Terraform 1.0 treats a
/// plugin's stderr line starting with `panic` as a crash of the plugin and prints a
/// crash report; the server already turns a panic in an operation into a diagnostic.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".to_owned());
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("[ERROR] provider internal error: {message}{location}");
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_send_without_delay() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let address = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(address).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(
            !accepted.nodelay().unwrap(),
            "the kernel's default has Nagle on"
        );
        prepare_connection(&accepted);
        assert!(accepted.nodelay().unwrap());
    }
}
