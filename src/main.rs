//! The `pryx` binary. Everything of substance lives in the library; see `pryx::main`.

fn main() -> std::process::ExitCode {
    pryx::main()
}
