//! Compiles the platform's gRPC API (`slipway_runtime.proto`, next to this file) with
//! protox (a pure-Rust protobuf compiler), so that building needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not with env!(): a build script compiled in one checkout may be
    // reused from a shared target directory by another one.
    let manifest_dir =
        std::env::var_os("CARGO_MANIFEST_DIR").ok_or("CARGO_MANIFEST_DIR is not set")?;
    let proto_dir = std::path::PathBuf::from(&manifest_dir);
    let files = ["slipway_runtime.proto"];
    for file in &files {
        println!("cargo:rerun-if-changed={}", proto_dir.join(file).display());
    }
    let descriptors = protox::compile(files, [&proto_dir])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
