//! Compiles the Talos protos in `proto/` with protox (pure Rust, no `protoc` needed) and
//! generates prost messages plus tonic clients, and servers with the `server` feature (the
//! simulator and test mocks). Generating at build time means the Rust code can never drift
//! from the `.proto` files.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/google/rpc/status.proto",
        "proto/common/common.proto",
        "proto/machine/machine.proto",
        "proto/storage/storage.proto",
        "proto/v1alpha1/resource.proto",
        "proto/v1alpha1/state.proto",
        "proto/resource/config/config.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    println!("cargo:rerun-if-env-changed=CARGO_FEATURE_SERVER");
    let server = std::env::var_os("CARGO_FEATURE_SERVER").is_some();
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(server)
        // Servers (the simulator, test mocks) implement only what they serve.
        .generate_default_stubs(true)
        .compile_fds(fds)?;
    Ok(())
}
