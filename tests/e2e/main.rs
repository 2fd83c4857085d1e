//! End-to-end tests: each starts the real `pryx` binary, points it at a local stand-in of
//! the Chat Completions API, and drives it through the typed JSON-RPC client, as a user's
//! UI or script would. One test binary, so the suite links once.

mod support;

mod approvals;
mod chat;
mod cli;
mod containment;
mod control_center;
mod desktop;
mod durability;
mod login;
mod mcp;
mod providers;
mod secrets;
mod security;
mod telegram;
mod telemetry;
mod tools;
mod whatsapp;
