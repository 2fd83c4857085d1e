//! Pryx: a sovereign personal AI agent in one binary.
//!
//! The binary (`src/main.rs`) only calls [`cli::main`]; tests and benches use the same
//! pieces. See ARCHITECTURE.md for the map and its invariants.

// Lints that hold the house rules: no unwrap on anything from outside (tests may), and no
// printing: logs go through `tracing` to stderr, and stdout carries only the listening line
// (`runtime`, written explicitly) and what the terminal front end in `cli` shows its user.
#![deny(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

pub(crate) mod agent;
pub mod approvals;
pub(crate) mod auth;
pub(crate) mod channels;
// The terminal front end: printing is its job.
#[allow(clippy::print_stdout, clippy::print_stderr)]
pub(crate) mod cli;
pub mod client;
pub mod config;
pub(crate) mod datadir;
#[cfg(feature = "desktop")]
pub(crate) mod desktop;
pub(crate) mod html;
pub(crate) mod llm;
pub mod mcp;
pub(crate) mod runtime;
pub mod sandbox;
pub mod secrets;
pub(crate) mod server;
pub mod store;
pub mod telemetry;
pub mod tools;

/// The whole `pryx` program: the binary's `main` calls this and nothing else.
pub fn main() -> std::process::ExitCode {
    cli::main()
}

/// Choose ring as the TLS crypto provider of every HTTPS client in the process (reqwest is
/// built without a provider of its own; see Cargo.toml). Idempotent; the binary calls it
/// first thing, and so must any other program that uses this library's HTTP clients.
pub fn install_tls_provider() {
    // Fails only when a provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
