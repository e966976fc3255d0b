//! Generates, from the greeter's `.proto`, both a plain tonic client and server and the rmicro
//! client and handler trait, so each side can be played by a peer rmicro did not write.

fn main() -> std::io::Result<()> {
    let proto = "../../examples/greeter/proto/greeter.proto";
    let include = "../../examples/greeter/proto";
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").map_err(std::io::Error::other)?);
    std::fs::create_dir_all(out.join("tonic"))?;
    std::fs::create_dir_all(out.join("rmicro"))?;
    let descriptors = protox::compile([proto], [include]).map_err(|e| std::io::Error::other(e.to_string()))?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .out_dir(out.join("tonic"))
        .compile_fds(descriptors)?;
    rmicro_build::Builder::new().out_dir(out.join("rmicro")).compile(&[proto], &[include])
}
