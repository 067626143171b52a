//! What deploy/kubernetes/daemonset.yaml says about the daemon's container, read
//! with a YAML parser: the tests run the daemon the way the manifest does.
use std::path::Path;

use yaml_rust2::{Yaml, YamlLoader};

fn container() -> Yaml {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/daemonset.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    docs[0]["spec"]["template"]["spec"]["containers"][0].clone()
}

fn strings(list: &Yaml, what: &str) -> Vec<String> {
    let list = list.as_vec().unwrap_or_else(|| panic!("the DaemonSet's container has no {what}"));
    list.iter().map(|item| item.as_str().unwrap_or_else(|| panic!("{what}: {item:?} is not a string")).to_string()).collect()
}

/// The container's arguments, as written.
pub fn args() -> Vec<String> {
    strings(&container()["args"], "args")
}

/// The capabilities the container adds (`BPF`, `PERFMON`, …).
pub fn capabilities() -> Vec<String> {
    strings(&container()["securityContext"]["capabilities"]["add"], "capabilities to add")
}
