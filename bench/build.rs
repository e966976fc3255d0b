//! Generates, from `proto/bench.proto`, a plain tonic client and server (also the prost types
//! the other peers use) and the rmicro client and handler trait.

fn main() -> std::io::Result<()> {
    let (proto, include) = ("proto/bench.proto", "proto");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").map_err(std::io::Error::other)?);
    std::fs::create_dir_all(out.join("tonic"))?;
    std::fs::create_dir_all(out.join("rmicro"))?;
    let descriptors = protox::compile([proto], [include]).map_err(|e| std::io::Error::other(e.to_string()))?;
    tonic_prost_build::configure().out_dir(out.join("tonic")).compile_fds(descriptors)?;
    rmicro_build::Builder::new().out_dir(out.join("rmicro")).compile(&[proto], &[include])
}
