//! Generates the Pub/Sub API's messages, client and server (`eventbus.v1`) from
//! `proto/eventbus/v1/pubsub_api.proto`. protox parses the file in Rust, so a
//! fresh machine needs no `protoc`.

fn main() {
    let proto = "proto/eventbus/v1/pubsub_api.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"]).unwrap_or_else(|e| panic!("{proto}: {e}"));
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)
        .unwrap_or_else(|e| panic!("generating the Pub/Sub API code from {proto}: {e}"));
}
