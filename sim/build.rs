//! Generates the Pub/Sub API's server side (`eventbus.v1`) from the contract in
//! `../proto`, the same file the engine's client is generated from. protox parses
//! it in Rust, so a fresh machine needs no `protoc`.

fn main() {
    let proto = "../proto/eventbus/v1/pubsub_api.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["../proto"]).unwrap_or_else(|e| panic!("{proto}: {e}"));
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .compile_fds(descriptors)
        .unwrap_or_else(|e| panic!("generating the Pub/Sub API server from {proto}: {e}"));
}
