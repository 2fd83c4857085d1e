//! Pryx: a sovereign personal AI agent in one binary.
//!
//! The binary (`src/main.rs`) only calls [`cli::main`]; tests and benches use the same
//! pieces. See ARCHITECTURE.md for the map and its invariants.

pub mod agent;
pub mod approvals;
pub mod channels;
pub mod cli;
pub mod client;
pub mod config;
pub mod datadir;
#[cfg(feature = "desktop")]
pub mod desktop;
pub mod html;
pub mod llm;
pub mod mcp;
pub mod runtime;
pub mod sandbox;
pub mod secrets;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tools;

/// Choose ring as the TLS crypto provider of every HTTPS client in the process (reqwest is
/// built without a provider of its own; see Cargo.toml). Idempotent; the binary calls it
/// first thing, and so must any other program that uses this library's HTTP clients.
pub fn install_tls_provider() {
    // Fails only when a provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
