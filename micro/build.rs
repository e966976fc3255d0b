//! Lists the backends compiled in. A backend crate `rmicro-{kind}-{name}` is the optional
//! dependency (and so the feature) `{kind}-{name}` of this crate and exports `PLUGIN`; this
//! turns every such feature that is on into a re-export and an entry of the plugin list, so the
//! facade holds no code of its own per backend. The backends among the crate's default
//! features are the defaults of their kinds (go-micro's stack).

use std::fmt::Write as _;

fn main() {
    let mut features: Vec<String> = std::env::vars()
        .filter_map(|(key, _)| key.strip_prefix("CARGO_FEATURE_").map(str::to_ascii_lowercase))
        .filter(|feature| ["transport_", "registry_", "broker_"].iter().any(|kind| feature.starts_with(kind)))
        .collect();
    features.sort();
    let mut code = String::new();
    for crate_name in &features {
        let _ = writeln!(code, "#[doc(inline)]\npub use ::{crate_name};");
    }
    code.push_str("\n/// The plugins of the backends compiled in, by feature name.\npub(crate) static COMPILED_IN: &[&rmicro_core::raw::plugin::Plugin] = &[\n");
    for crate_name in &features {
        let _ = writeln!(code, "    &::{crate_name}::PLUGIN,");
    }
    code.push_str("];\n");
    let defaults = default_features();
    code.push_str("\n/// The plugins of the default features' backends, when compiled in.\npub(crate) static DEFAULTS: &[&rmicro_core::raw::plugin::Plugin] = &[\n");
    for crate_name in features.iter().filter(|f| defaults.contains(f)) {
        let _ = writeln!(code, "    &::{crate_name}::PLUGIN,");
    }
    code.push_str("];\n");
    let out = std::env::var("OUT_DIR").unwrap_or_else(|_| ".".to_owned());
    if let Err(e) = std::fs::write(std::path::Path::new(&out).join("backends.rs"), code) {
        panic!("cannot write the list of backends: {e}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=Cargo.toml");
}

/// The manifest's default features, as crate names.
fn default_features() -> Vec<String> {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".to_owned());
    let text = std::fs::read_to_string(std::path::Path::new(&manifest).join("Cargo.toml")).unwrap_or_default();
    let manifest: toml::Table = match text.parse() {
        Ok(manifest) => manifest,
        Err(e) => panic!("rmicro's Cargo.toml does not parse: {e}"),
    };
    let defaults = manifest.get("features").and_then(|f| f.get("default")).and_then(toml::Value::as_array);
    defaults.into_iter().flatten().filter_map(toml::Value::as_str).map(|f| f.replace('-', "_")).collect()
}
