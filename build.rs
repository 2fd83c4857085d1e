//! Rebuild when a migration changes: `sqlx::migrate!` embeds them at compile time.
//! On Linux with glibc, link the binary with packed relative relocations (RELR): a
//! position-independent binary of this size carries about 0.7 MB of them otherwise.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if linux_gnu {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
