//! Links the `voucherd` executable with packed relative relocations (`DT_RELR`, GNU ld 2.38 and
//! glibc 2.36 on). A position-independent executable carries one 24-byte record per pointer the
//! loader must adjust at start-up; this one has about 131,000 (3 MB), which the loader reads
//! once and which then stay resident as part of the file's mapping. Packed, they take 41 KB.
//! Measured with `bash bench/memory.sh`: 2-3 MB less resident from start-up on
//! (docs/OPERATIONS.md, "Performance").
//!
//! Such an executable needs glibc 2.36 or later where it runs, as well as where it is built.
//! To build one for an older system, set `VOUCHERD_PACK_RELOCS=0`.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=VOUCHERD_PACK_RELOCS");
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    let wanted = std::env::var("VOUCHERD_PACK_RELOCS").as_deref() != Ok("0");
    if linux_gnu && wanted {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
