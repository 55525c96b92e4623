//! Compiles the reference sink's protos (`proto/testkit/`) with protox (no `protoc` needed):
//!
//! - `storage_write.proto` + `rpc_status.proto` → the `BigQueryWrite` server (tonic-build), in
//!   `$OUT_DIR/refsink_protos.rs` (a module tree by package);
//! - `column_name.proto` (with `google/protobuf/descriptor.proto`) → an encoded
//!   `FileDescriptorSet` in `$OUT_DIR/refsink_descriptor_pool.bin`, the prost-reflect pool the sink
//!   decodes writers' `DescriptorProto`s with.

use std::env;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let root = manifest.join("../../proto");
    let files = ["testkit/storage_write.proto", "testkit/rpc_status.proto", "testkit/column_name.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    println!("cargo:rerun-if-changed=build.rs");

    let service = protox::compile(["testkit/storage_write.proto"], [&root])?;
    tonic_build::configure()
        .build_client(false)
        .build_server(true)
        .bytes([".google.cloud.bigquery.storage.v1"])
        .include_file("refsink_protos.rs")
        .out_dir(&out)
        .compile_fds(service)?;

    let mut pool = protox::Compiler::new([&root])?;
    pool.include_imports(true).include_source_info(false).open_file("testkit/column_name.proto")?;
    std::fs::write(out.join("refsink_descriptor_pool.bin"), pool.encode_file_descriptor_set())?;
    Ok(())
}
