//! The logic of Pryx's control plane, with no Cloudflare in it.
//!
//! The Worker (`../worker`) is a thin shell: it turns a request into the plain values these
//! modules take, performs the one outbound fetch they describe, and turns their [`Reply`]
//! back into a response. Everything that decides anything lives here and is tested with
//! plain `cargo test`:
//!
//! - [`device`]: the RFC 8628 device authorization grant, passed through to GitHub or
//!   Google with the client credentials only the Worker holds, answered as RFC 8628 JSON.
//! - [`otlp`]: OTLP/HTTP trace ingest (protobuf or JSON, gzip or not), every attribute,
//!   event, link and resource scrubbed by [`scrub`] before it is forwarded.
//! - [`ingest_token`]: the stateless HMAC tokens that authenticate telemetry.
//! - [`http`]: the checks every request passes first, and the [`Reply`] type.
//!
//! Invariant: nothing here keeps state between requests, and nothing returns or logs a
//! token, a code or a request body except to the party it belongs to.

pub mod device;
pub mod http;
pub mod ingest_token;
pub mod otlp;
pub mod scrub;

pub use http::Reply;
