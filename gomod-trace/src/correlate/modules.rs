//! Module fetches from the module cache's file activity (failure-modes.md): while
//! cmd/go fetches M@V it writes `$GOMODCACHE/cache/download/<M>/@v/V.info`, `V.mod`
//! (each as a temporary file renamed into place), `V.lock`, `V.zip`, `V.ziphash`,
//! then extracts the zip to `$GOMODCACHE/<M>@<V>/` under a `V.partial` marker that
//! it removes when done. Direct (VCS) fetches work in `cache/vcs/`; checksum
//! database lookups land in `cache/download/sumdb/<name>/lookup/`.
use serde_json::Value;

/// What a path under GOMODCACHE says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CachePath {
    /// A file of `cache/download/<M>/@v/` for version `version` (`list` files have
    /// no version); `part` is `info`, `mod`, `zip`, `ziphash`, `lock` or `partial`.
    Download { module: String, version: Option<String>, part: String, temporary: bool },
    /// Extraction into `<M>@<V>/`.
    Extract { module: String, version: String },
    /// A checksum database lookup or tile.
    Sumdb { name: String, lookup: Option<String> },
    /// A VCS checkout for a direct fetch.
    Vcs,
}

/// Undoes module path escaping: `!x` stands for `X`.
pub fn unescape(escaped: &str) -> String {
    let mut out = String::with_capacity(escaped.len());
    let mut bang = false;
    for c in escaped.chars() {
        match (bang, c) {
            (false, '!') => bang = true,
            (true, c) => {
                out.extend(c.to_uppercase());
                bang = false;
            }
            (false, c) => out.push(c),
        }
    }
    out
}

const PARTS: [&str; 6] = [".ziphash", ".info", ".mod", ".zip", ".lock", ".partial"];

/// Splits `v1.2.3.mod` / `v1.2.3.mod123456.tmp` into version, part and temporariness.
fn version_file(file: &str) -> Option<(String, String, bool)> {
    let (file, temporary) = match file.strip_suffix(".tmp") {
        Some(stem) => (stem.trim_end_matches(|c: char| c.is_ascii_digit()), true),
        None => (file, false),
    };
    PARTS.iter().find_map(|part| {
        let version = file.strip_suffix(part)?;
        (!version.is_empty()).then(|| (version.to_string(), part[1..].to_string(), temporary))
    })
}

/// Classifies `path` relative to the build's GOMODCACHE.
pub fn classify(modcache: &str, path: &str) -> Option<CachePath> {
    let rest = path.strip_prefix(modcache.trim_end_matches('/'))?.strip_prefix('/')?;
    if let Some(download) = rest.strip_prefix("cache/download/") {
        if let Some(sumdb) = download.strip_prefix("sumdb/") {
            let (name, rest) = sumdb.split_once('/')?;
            let lookup = rest.strip_prefix("lookup/").map(unescape);
            return Some(CachePath::Sumdb { name: name.to_string(), lookup });
        }
        let (module, file) = download.split_once("/@v/")?;
        let module = unescape(module);
        if file.starts_with("list") {
            return Some(CachePath::Download { module, version: None, part: "list".into(), temporary: file != "list" });
        }
        let (version, part, temporary) = version_file(file)?;
        return Some(CachePath::Download { module, version: Some(unescape(&version)), part, temporary });
    }
    if rest.starts_with("cache/vcs/") {
        return Some(CachePath::Vcs);
    }
    if rest.starts_with("cache/") {
        return None;
    }
    // <M>@<V>/...: module paths hold no '@', file names inside may.
    let at = rest.find('@')?;
    let version_end = rest[at..].find('/').map_or(rest.len(), |i| at + i);
    Some(CachePath::Extract { module: unescape(&rest[..at]), version: unescape(&rest[at + 1..version_end]) })
}

/// Adds `part` to a span's `files` attribute once.
pub fn note_part(attrs: &mut std::collections::BTreeMap<String, Value>, part: &str) {
    let files = attrs.entry("files".to_string()).or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(files) = files
        && !files.iter().any(|f| f == part)
    {
        files.push(part.into());
    }
}

/// The repository URL a direct fetch of `module` used, among the URLs of the
/// build's VCS command lines: the one whose host and path the module path
/// starts with (`github.com/o/r` for `github.com/o/r/v2`), else whose last
/// path element is an element of the module path; the only URL if there is one.
pub fn vcs_url_for(module: &str, urls: &[String]) -> Option<String> {
    let trimmed = |url: &str| {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let rest = rest.rsplit('@').next().unwrap_or(rest).trim_end_matches('/');
        rest.strip_suffix(".git").unwrap_or(rest).to_ascii_lowercase()
    };
    let module = module.to_ascii_lowercase();
    let elements: Vec<&str> = module.split('/').collect();
    urls.iter()
        .find(|url| {
            let t = trimmed(url);
            module == t || module.starts_with(&format!("{t}/"))
        })
        .or_else(|| {
            urls.iter().find(|url| trimmed(url).rsplit('/').next().is_some_and(|last| elements[1..].contains(&last)))
        })
        .or_else(|| if urls.len() == 1 { urls.first() } else { None })
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CACHE: &str = "/home/ci/go/pkg/mod";

    fn download(module: &str, version: &str, part: &str, temporary: bool) -> Option<CachePath> {
        Some(CachePath::Download {
            module: module.into(),
            version: Some(version.into()),
            part: part.into(),
            temporary,
        })
    }

    #[test]
    fn finds_the_repository_of_a_direct_fetch() {
        let urls = vec!["https://github.com/BurntSushi/toml".to_string(), "https://git.lab.test/private.git".to_string()];
        assert_eq!(vcs_url_for("github.com/BurntSushi/toml/v2", &urls).as_deref(), Some("https://github.com/BurntSushi/toml"));
        assert_eq!(vcs_url_for("lab.test/private", &urls).as_deref(), Some("https://git.lab.test/private.git"));
        assert_eq!(vcs_url_for("example.com/other", &urls), None);
        assert_eq!(vcs_url_for("example.com/other", &urls[1..]).as_deref(), Some("https://git.lab.test/private.git"));
    }

    /// What the kernel programs scan: the part of a path after `$GOMODCACHE/`.
    fn rest(path: &str) -> [u8; gomod_trace_ebpf::PATH_CAPTURE] {
        let mut rest = [0; gomod_trace_ebpf::PATH_CAPTURE];
        rest[..path.len()].copy_from_slice(path.as_bytes());
        rest
    }

    #[test]
    fn the_kernel_keys_a_module_directory_alike_from_its_files_and_its_partial_marker() {
        use gomod_trace_ebpf::{extraction_dir, partial_dir};
        let dir = extraction_dir(&rest("github.com/!burnt!sushi/toml@v1.3.2/decode.go")).expect("a module file");
        assert_eq!(extraction_dir(&rest("github.com/!burnt!sushi/toml@v1.3.2/internal/tz.go")), Some(dir));
        assert_eq!(partial_dir(&rest("cache/download/github.com/!burnt!sushi/toml/@v/v1.3.2.partial")), Some(dir));
        // '@' in a file name inside the module does not move the directory.
        assert_eq!(extraction_dir(&rest("github.com/!burnt!sushi/toml@v1.3.2/web/node_modules/@types/x.ts")), Some(dir));
        assert_ne!(partial_dir(&rest("cache/download/github.com/!burnt!sushi/toml/@v/v1.3.3.partial")), Some(dir));
        // Not module directories, not markers.
        for path in ["cache/download/sumdb/sum.golang.org/lookup/x.org/m@v1.0.0", "cache/vcs/0a1b/objects/pack/p", "github.com/x@v1.0.0"] {
            assert_eq!(extraction_dir(&rest(path)), None, "{path}");
        }
        for path in ["cache/download/x.org/m/@v/v1.0.0.zip", "cache/download/x.org/m/@v/v1.0.0.partial.tmp", "x.org/m/@v/v1.0.0.partial"] {
            assert_eq!(partial_dir(&rest(path)), None, "{path}");
        }
        // Opens that tell the timeline nothing, and some that do.
        let uninformative = |path: &str| gomod_trace_ebpf::uninformative_open(&rest(path));
        assert!(uninformative("cache/download/x.org/m/@v/list"));
        assert!(uninformative("cache/download/x.org/m/@v/v1.0.0.partial"));
        assert!(uninformative("cache/download/x.org/m/@v/v1.0.0.ziphash"));
        for path in ["cache/download/x.org/m/@v/v1.0.0.lock", "cache/download/x.org/m/@v/list.tmp", "cache/download/x.org/list/@v/v1.0.0.zip123.tmp", "x.org/m@v1.0.0/list"] {
            assert!(!uninformative(path), "{path}");
        }
    }

    #[test]
    fn classifies_the_download_sequence() {
        let at = |rest: &str| classify(CACHE, &format!("{CACHE}/{rest}"));
        assert_eq!(at("cache/download/github.com/!burnt!sushi/toml/@v/v1.3.2.info"), download("github.com/BurntSushi/toml", "v1.3.2", "info", false));
        assert_eq!(at("cache/download/lab.test/mod01/@v/v1.0.0.mod2961204873.tmp"), download("lab.test/mod01", "v1.0.0", "mod", true));
        assert_eq!(at("cache/download/lab.test/mod01/@v/v1.0.0.zip"), download("lab.test/mod01", "v1.0.0", "zip", false));
        assert_eq!(at("cache/download/lab.test/mod01/@v/v1.0.0.ziphash"), download("lab.test/mod01", "v1.0.0", "ziphash", false));
        assert_eq!(at("cache/download/lab.test/mod01/@v/v1.0.0.partial"), download("lab.test/mod01", "v1.0.0", "partial", false));
        assert_eq!(at("cache/download/lab.test/mod01/@v/v1.0.0-rc.1.lock"), download("lab.test/mod01", "v1.0.0-rc.1", "lock", false));
        assert!(matches!(at("cache/download/lab.test/mod01/@v/list"), Some(CachePath::Download { version: None, .. })));
        assert_eq!(
            at("cache/download/sumdb/sum.golang.org/lookup/golang.org/x/text@v0.3.0"),
            Some(CachePath::Sumdb { name: "sum.golang.org".into(), lookup: Some("golang.org/x/text@v0.3.0".into()) })
        );
        assert_eq!(at("cache/vcs/0123abcd/HEAD"), Some(CachePath::Vcs));
        assert_eq!(
            at("lab.test/mod01@v1.0.0/mod01.go"),
            Some(CachePath::Extract { module: "lab.test/mod01".into(), version: "v1.0.0".into() })
        );
        assert_eq!(
            at("github.com/x/ui@v0.2.0/web/node_modules/@types/node/index.d.ts"),
            Some(CachePath::Extract { module: "github.com/x/ui".into(), version: "v0.2.0".into() })
        );
        assert_eq!(classify(CACHE, "/tmp/elsewhere"), None);
        assert_eq!(classify(CACHE, &format!("{CACHE}/cache/download/x/@v/garbage")), None);
    }
}
