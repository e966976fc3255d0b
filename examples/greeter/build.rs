//! Generates the greeter's messages, client and handler trait from `proto/greeter.proto`.

fn main() -> std::io::Result<()> {
    rmicro_build::compile_protos(&["proto/greeter.proto"], &["proto"])
}
