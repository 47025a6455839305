//! The plugin server in-process, spoken to over real TCP and TLS the way Terraform does:
//! AutoMTLS with a P-521 client certificate like Terraform's, refusal of clients
//! without it, `StopProvider` cancelling work in flight, a panic turned into a
//! diagnostic, state upgrades, and `Shutdown` ending the server.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::{Deserialize, Serialize};
use tfplug::proto::plugin::grpc_controller_client::GrpcControllerClient;
use tfplug::proto::tfplugin6 as pb;
use tfplug::proto::tfplugin6::provider_client::ProviderClient;
use tfplug::schema::{Attribute, Block, Schema};
use tfplug::{async_trait, AnyDataSource, AnyResource, Context, Diagnostics, Type, Value};
use tonic::transport::{Channel, Endpoint};

// ---- a provider with resources that misbehave on purpose ----

struct TestProvider;

#[derive(Deserialize)]
struct NoConfig {}

#[async_trait]
impl tfplug::Provider for TestProvider {
    type Config = NoConfig;
    type Client = ();
    fn type_name(&self) -> &str {
        "t"
    }
    fn schema(&self) -> Schema {
        Schema::new(Block::new())
    }
    async fn configure(&self, _ctx: &Context, _config: NoConfig) -> Result<(), Diagnostics> {
        Ok(())
    }
    fn resources(&self) -> Vec<Arc<dyn AnyResource<()>>> {
        vec![
            tfplug::resource(TestResource(Kind::Slow)),
            tfplug::resource(TestResource(Kind::Panics)),
            tfplug::resource(TestResource(Kind::Versioned)),
        ]
    }
    fn data_sources(&self) -> Vec<Arc<dyn AnyDataSource<()>>> {
        Vec::new()
    }
}

#[derive(Serialize, Deserialize)]
struct Named {
    name: String,
}

fn named_schema() -> Schema {
    Schema::new(Block::new().attribute(Attribute::string("name").required()))
}

/// One resource type per misbehaviour.
#[derive(Clone, Copy)]
enum Kind {
    /// A create that takes "forever" unless stopped.
    Slow,
    /// A create that panics when the name is "boom".
    Panics,
    /// Schema version 1; version 0 called the attribute `old_name`.
    Versioned,
}

struct TestResource(Kind);

#[async_trait]
impl tfplug::Resource for TestResource {
    type Client = ();
    type State = Named;
    fn type_name(&self) -> &str {
        match self.0 {
            Kind::Slow => "t_slow",
            Kind::Panics => "t_panics",
            Kind::Versioned => "t_versioned",
        }
    }
    fn schema(&self) -> Schema {
        match self.0 {
            Kind::Versioned => named_schema().version(1),
            _ => named_schema(),
        }
    }
    async fn create(&self, ctx: &Context, _: &(), planned: Named) -> Result<Named, Diagnostics> {
        match self.0 {
            Kind::Slow => tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(600)) => Ok(planned),
                _ = ctx.cancelled() => Err(tfplug::Diagnostic::error("cancelled by resource", "").into()),
            },
            Kind::Panics if planned.name == "boom" => panic!("the resource blew up"),
            _ => Ok(planned),
        }
    }
    async fn read(&self, _: &Context, _: &(), s: Named) -> Result<Option<Named>, Diagnostics> {
        Ok(Some(s))
    }
    async fn update(&self, _: &Context, _: &(), _: Named, p: Named) -> Result<Named, Diagnostics> {
        Ok(p)
    }
    async fn delete(&self, _: &Context, _: &(), _: Named) -> Result<(), Diagnostics> {
        Ok(())
    }
    fn upgrade_state(
        &self,
        from_version: i64,
        mut state: serde_json::Value,
    ) -> Result<serde_json::Value, Diagnostics> {
        assert_eq!(from_version, 0);
        let old = state["old_name"].take();
        Ok(serde_json::json!({ "name": old }))
    }
}

// ---- a client that does what Terraform's go-plugin does ----

struct Client {
    key: PrivatePkcs8KeyDer<'static>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
}

/// A client certificate made the way go-plugin makes Terraform's: ECDSA P-521,
/// self-signed, marked as a CA, for `localhost`.
fn terraform_like_client_certificate() -> Client {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    Client {
        key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        cert_der: cert.der().clone(),
        cert_pem: cert.pem(),
    }
}

/// Accepts exactly the certificate from the handshake line, as go-plugin does.
#[derive(Debug)]
struct PinnedServer(Vec<u8>);

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        assert_eq!(end_entity.as_ref(), self.0.as_slice());
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}

struct Running {
    address: String,
    server_cert: Vec<u8>,
    client: Client,
    done: tokio::task::JoinHandle<Result<(), tfplug::serve::ServeError>>,
}

/// Starts the server as Terraform would, with its environment, and reads the handshake.
async fn start() -> Running {
    let client = terraform_like_client_certificate();
    let mut env = HashMap::new();
    env.insert(
        tfplug::handshake::MAGIC_COOKIE_KEY.to_owned(),
        tfplug::handshake::MAGIC_COOKIE_VALUE.to_owned(),
    );
    env.insert("PLUGIN_PROTOCOL_VERSIONS".to_owned(), "5,6".to_owned());
    env.insert("PLUGIN_CLIENT_CERT".to_owned(), client.cert_pem.clone());
    let (line_tx, line_rx) = tokio::sync::oneshot::channel::<String>();
    let done = tokio::spawn(async move {
        let lookup = move |k: &str| env.get(k).cloned();
        tfplug::serve::serve_plugin(&lookup, TestProvider, move |line| {
            let _ = line_tx.send(line.to_owned());
            Ok(())
        })
        .await
    });
    let line = line_rx.await.expect("handshake line");
    let fields: Vec<&str> = line.split('|').collect();
    assert_eq!(fields.len(), 6, "{line}");
    assert_eq!(&fields[..3], &["1", "6", "tcp"]);
    assert_eq!(fields[4], "grpc");
    let server_cert = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(fields[5])
        .expect("unpadded base64 certificate");
    Running {
        address: fields[3].to_owned(),
        server_cert,
        client,
        done,
    }
}

/// Connects over TLS, presenting `identity` as the client certificate (or none).
async fn connect(
    running: &Running,
    identity: Option<(&CertificateDer<'static>, &PrivatePkcs8KeyDer<'static>)>,
) -> Result<Channel, tonic::transport::Error> {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServer(running.server_cert.clone())));
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(vec![cert.clone()], PrivateKeyDer::Pkcs8(key.clone_key()))
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let address = running.address.clone();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let connector = connector.clone();
            let address = address.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(address).await?;
                let tls = connector
                    .connect(ServerName::try_from("localhost").unwrap(), tcp)
                    .await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
}

async fn provider_client(running: &Running) -> ProviderClient<Channel> {
    let channel = connect(
        running,
        Some((&running.client.cert_der, &running.client.key)),
    )
    .await
    .expect("connect with Terraform's certificate");
    ProviderClient::new(channel)
}

fn dynamic(ty: &Type, value: &Value) -> Option<pb::DynamicValue> {
    Some(pb::DynamicValue {
        msgpack: tfplug::codec::encode_msgpack(ty, value).unwrap(),
        json: Vec::new(),
    })
}

fn apply_request(type_name: &str, name: &str) -> pb::apply_resource_change::Request {
    let ty = named_schema().value_type();
    pb::apply_resource_change::Request {
        type_name: type_name.to_owned(),
        prior_state: dynamic(&ty, &Value::Null),
        planned_state: dynamic(&ty, &Value::object([("name", Value::from(name))])),
        config: dynamic(&ty, &Value::object([("name", Value::from(name))])),
        ..Default::default()
    }
}

async fn configure(client: &mut ProviderClient<Channel>) {
    let response = client
        .configure_provider(pb::configure_provider::Request {
            config: dynamic(&Type::object::<&str>([]), &Value::object::<&str>([])),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        response.diagnostics.is_empty(),
        "{:?}",
        response.diagnostics
    );
}

#[tokio::test]
async fn terraform_certificate_is_required() {
    let running = start().await;

    // Terraform's own (P-521) certificate works.
    let mut client = provider_client(&running).await;
    let schema = client
        .get_provider_schema(pb::get_provider_schema::Request::default())
        .await
        .expect("schema over mTLS")
        .into_inner();
    assert!(schema.resource_schemas.contains_key("t_slow"));

    // No client certificate: the handshake is refused, so no RPC gets through.
    assert!(
        is_refused(connect(&running, None).await).await,
        "a client without a certificate must be refused"
    );

    // Some other certificate, even a valid P-521 one: refused too.
    let stranger = terraform_like_client_certificate();
    assert!(
        is_refused(connect(&running, Some((&stranger.cert_der, &stranger.key))).await).await,
        "a client with another certificate must be refused"
    );
}

/// True when no RPC gets through a connection: TLS may fail at connect, or (with
/// TLS 1.3, where the server checks the client certificate after the client thinks
/// the handshake is done) at the first call.
async fn is_refused(connection: Result<Channel, tonic::transport::Error>) -> bool {
    match connection {
        Err(_) => true,
        Ok(channel) => ProviderClient::new(channel)
            .get_provider_schema(pb::get_provider_schema::Request::default())
            .await
            .is_err(),
    }
}

#[tokio::test]
async fn stop_provider_cancels_work_in_flight() {
    let running = start().await;
    let mut client = provider_client(&running).await;
    configure(&mut client).await;

    let mut apply_client = client.clone();
    let apply = tokio::spawn(async move {
        apply_client
            .apply_resource_change(apply_request("t_slow", "x"))
            .await
            .map(|r| r.into_inner())
    });
    // Give the create time to start, then stop.
    tokio::time::sleep(Duration::from_millis(200)).await;
    client
        .stop_provider(pb::stop_provider::Request::default())
        .await
        .expect("stop");
    let response = tokio::time::timeout(Duration::from_secs(10), apply)
        .await
        .expect("the apply returns promptly after StopProvider")
        .unwrap()
        .expect("a response, not a transport error");
    assert_eq!(response.diagnostics.len(), 1, "{:?}", response.diagnostics);
    let d = &response.diagnostics[0];
    assert_eq!(d.severity, pb::diagnostic::Severity::Error as i32);
    assert!(
        d.summary == "Operation stopped" || d.summary == "cancelled by resource",
        "{d:?}"
    );

    // The provider keeps working after a stop.
    let ok = client
        .apply_resource_change(apply_request("t_panics", "fine"))
        .await
        .unwrap()
        .into_inner();
    assert!(ok.diagnostics.is_empty(), "{:?}", ok.diagnostics);
}

#[tokio::test]
async fn a_panic_becomes_a_diagnostic() {
    let running = start().await;
    let mut client = provider_client(&running).await;
    configure(&mut client).await;
    let response = client
        .apply_resource_change(apply_request("t_panics", "boom"))
        .await
        .expect("the server survives the panic")
        .into_inner();
    assert_eq!(response.diagnostics.len(), 1);
    assert_eq!(response.diagnostics[0].summary, "Provider internal error");
    assert!(!response.diagnostics[0].detail.contains("blew up"));
    // And serves the next call.
    client
        .get_provider_schema(pb::get_provider_schema::Request::default())
        .await
        .expect("still serving");
}

#[tokio::test]
async fn old_state_is_upgraded() {
    let running = start().await;
    let mut client = provider_client(&running).await;
    let response = client
        .upgrade_resource_state(pb::upgrade_resource_state::Request {
            type_name: "t_versioned".to_owned(),
            version: 0,
            raw_state: Some(pb::RawState {
                json: br#"{"old_name":"kept"}"#.to_vec(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        response.diagnostics.is_empty(),
        "{:?}",
        response.diagnostics
    );
    let upgraded = tfplug::codec::decode_msgpack(
        &named_schema().value_type(),
        &response.upgraded_state.unwrap().msgpack,
    )
    .unwrap();
    assert_eq!(upgraded.get("name"), &Value::from("kept"));

    // Current-version state passes through; a newer version is refused clearly.
    let response = client
        .upgrade_resource_state(pb::upgrade_resource_state::Request {
            type_name: "t_versioned".to_owned(),
            version: 2,
            raw_state: Some(pb::RawState {
                json: br#"{"name":"x"}"#.to_vec(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        response.diagnostics[0].summary,
        "State written by a newer provider"
    );
}

#[tokio::test]
async fn unknown_types_get_a_helpful_diagnostic() {
    let running = start().await;
    let mut client = provider_client(&running).await;
    let response = client
        .validate_resource_config(pb::validate_resource_config::Request {
            type_name: "t_nope".to_owned(),
            config: dynamic(&named_schema().value_type(), &Value::Null),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let detail = &response.diagnostics[0].detail;
    assert!(
        detail.contains("t_nope") && detail.contains("t_slow"),
        "{detail}"
    );
}

#[tokio::test]
async fn shutdown_ends_the_server() {
    let running = start().await;
    let channel = connect(
        &running,
        Some((&running.client.cert_der, &running.client.key)),
    )
    .await
    .unwrap();
    GrpcControllerClient::new(channel)
        .shutdown(tfplug::proto::plugin::Empty {})
        .await
        .expect("shutdown answered");
    let result = tokio::time::timeout(Duration::from_secs(10), running.done)
        .await
        .expect("server ends after Shutdown")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}
