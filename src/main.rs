//! The `pryx` binary. Everything of substance lives in the library; see `cli::main`.

fn main() -> std::process::ExitCode {
    pryx::cli::main()
}
