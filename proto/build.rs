//! Compiles our `.proto` files with protox (pure Rust, no system `protoc`) and
//! generates prost messages plus tonic clients and servers.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/thanos/types.proto",
        "proto/thanos/rpc.proto",
        "proto/thanos/info.proto",
        "proto/thanos/hints.proto",
        "proto/thanos/rules.proto",
        "proto/thanos/targets.proto",
        "proto/thanos/metadata.proto",
        "proto/thanos/exemplars.proto",
        "proto/prometheus/remote.proto",
    ];
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Chunk payloads stay `bytes::Bytes`, so a store can hand out slices of
        // the buffers it fetched without copying them.
        .bytes(".")
        .compile_fds(fds)?;
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    Ok(())
}
