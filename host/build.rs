//! Generates the Pub/Sub API's messages and client (`eventbus.v1`) from the
//! contract in `../proto`. protox parses the file in Rust, so a fresh machine
//! needs no `protoc`. The emulator (`seam-sim`) builds the server from the same file.

fn main() {
    let proto = "../proto/eventbus/v1/pubsub_api.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["../proto"]).unwrap_or_else(|e| panic!("{proto}: {e}"));
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(descriptors)
        .unwrap_or_else(|e| panic!("generating the Pub/Sub API client from {proto}: {e}"));
}
