//! # tfplug
//!
//! A Terraform plugin protocol 6 server, so that a Terraform provider can be written in
//! Rust on tonic: the go-plugin handshake and AutoMTLS, the cty value codec, schemas
//! with validators and plan modifiers, and a typed async API for providers, resources
//! and data sources.
//!
//! A provider implements [`Provider`] (and [`Resource`] / [`DataSource`] for each type
//! it offers) and calls [`serve`] from `main`. The modules, one concept each:
//!
//! | module | concept |
//! | --- | --- |
//! | [`handshake`] | the start-up line Terraform reads, cookie and port negotiation |
//! | [`tls`] | AutoMTLS: our certificate, and pinning Terraform's |
//! | [`value`], [`number`] | cty types and values; exact numbers and their text |
//! | [`codec`] | values on the wire: [`codec::msgpack`] and [`codec::json`] |
//! | [`schema`], [`validator`], [`plan`] | what a resource accepts, and schema-driven planning |
//! | [`provider`], [`convert`] | the traits a provider author implements, serde structs |
//! | [`diagnostics`] | errors and warnings with attribute paths |
//! | [`server`], [`controller`], [`serve`] | the gRPC services and the process around them |

pub mod codec;
pub mod controller;
pub mod convert;
pub mod diagnostics;
pub mod handshake;
pub mod number;
pub mod plan;
pub mod provider;
pub mod schema;
pub mod serve;
pub mod server;
pub mod tls;
pub mod validator;
pub mod value;
mod wire;
pub mod write_only;

/// The generated protocol types, for tests and tools that talk to a provider directly.
pub mod proto {
    /// Terraform's plugin protocol, version 6.
    #[allow(clippy::all, missing_docs)]
    pub mod tfplugin6 {
        include!(concat!(env!("OUT_DIR"), "/tfplugin6.rs"));
    }
    /// go-plugin's controller, stdio and broker services.
    #[allow(clippy::all, missing_docs)]
    pub mod plugin {
        include!(concat!(env!("OUT_DIR"), "/plugin.rs"));
    }
}

pub use diagnostics::{AttributePath, Diagnostic, Diagnostics, Severity};
pub use provider::{
    data_source, resource, AnyDataSource, AnyResource, Context, DataSource, PlannedChange,
    Provider, Resource,
};
pub use schema::{Attribute, Block, NestedBlock, Nesting, Schema};
pub use serve::{serve, ServeOptions};
pub use value::{Number, Type, Value};

/// Re-exported so providers use the same `async_trait` as the traits they implement.
pub use async_trait::async_trait;
