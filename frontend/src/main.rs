//! The wasm entry point (`./x ui` builds it); natively there is nothing to run.

fn main() {
    #[cfg(target_arch = "wasm32")]
    pryx_frontend::start();
}
