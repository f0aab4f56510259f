//! Compiles `proto/` into Rust with tonic-prost-build, using the protoc that
//! ships inside the `protoc-bin-vendored` crate (nothing to install), and
//! writes the file descriptor set that gRPC server reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [PathBuf::from("proto/fieldwatch/v1/fieldwatch.proto")];
    // The vendored protoc comes with the well-known types
    // (google/protobuf/timestamp.proto) in its include directory.
    let includes = [PathBuf::from("proto"), protoc_bin_vendored::include_path()?];

    // Same effect as setting PROTOC for the build, without mutating the
    // process environment.
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);

    tonic_prost_build::configure()
        // Maps as BTreeMap: deterministic encoding and a direct match for
        // `validate::Submission`'s maps.
        .btree_map(".")
        // prost's codec, but a request that is not valid protobuf is the
        // caller's error (INVALID_ARGUMENT), not the server's (INTERNAL).
        .codec_path("crate::proto::codec::StrictCodec")
        .file_descriptor_set_path(out_dir.join("fieldwatch_descriptor.bin"))
        .compile_with_config(config, &protos, &includes)?;

    // The persisted partition state: messages only, kept out of the gRPC
    // API's descriptor set.
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().build_client(false).build_server(false).compile_with_config(
        config,
        &[PathBuf::from("proto/fieldwatch/state/v1/state.proto")],
        &includes,
    )?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
