//! The Go configuration model: which GOPROXY, GOSUMDB, GOPRIVATE… a build ran with,
//! and where each value came from (process environment, GOENV file,
//! $GOROOT/go.env, built-in default), following cmd/go's rules
//! (src/cmd/go/internal/cfg, modfetch). Values are redacted before they are kept.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    buildfs::{self, BuildRoot, Unread},
    redact,
    timeline::ConfigValue,
};

/// The variables gomod-trace keeps from a build's environment: the Go module
/// configuration, what locates its files, and the HTTP proxies. Everything else
/// (tokens, keys, unrelated settings) is dropped at decode.
pub const VARIABLES: [&str; 22] = [
    "GOPROXY",
    "GOSUMDB",
    "GONOSUMDB",
    "GONOSUMCHECK",
    "GOPRIVATE",
    "GONOPROXY",
    "GOINSECURE",
    "GOFLAGS",
    "GOMODCACHE",
    "GOPATH",
    "GOVCS",
    "GOTOOLCHAIN",
    "GOENV",
    "GOROOT",
    "GO111MODULE",
    "HOME",
    "XDG_CONFIG_HOME",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "https_proxy",
    "http_proxy",
];

/// Settings that come only from the process environment (not GOENV files).
const ENV_ONLY: [&str; 5] = ["HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "GOENV", "GOROOT"];

/// Kept variables that only locate things or are spelled twice: not reported
/// in `config` themselves (the lower-case proxy spellings fold into the upper).
const NOT_REPORTED: [&str; 7] =
    ["GONOSUMCHECK", "GOROOT", "GO111MODULE", "HOME", "XDG_CONFIG_HOME", "https_proxy", "http_proxy"];

pub const DEFAULT_GOPROXY: &str = "https://proxy.golang.org,direct";
pub const DEFAULT_GOSUMDB: &str = "sum.golang.org";

/// The environment block (`NAME=value\0…`), reduced to [`VARIABLES`], redacted.
pub fn relevant_environment(block: &[u8]) -> BTreeMap<String, String> {
    block
        .split(|&b| b == 0)
        .filter_map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            let (name, value) = entry.split_once('=')?;
            VARIABLES.contains(&name).then(|| (name.to_string(), redact::value(name, value)))
        })
        .collect()
}

/// A `go env -w` file or $GOROOT/go.env: `NAME=value` lines, `#` comments.
pub fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .filter(|(name, _)| VARIABLES.contains(&name.trim()))
        .map(|(name, value)| (name.trim().to_string(), redact::value(name.trim(), value.trim())))
        .collect()
}

/// A configuration file as read for a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigFile {
    pub path: String,
    pub vars: BTreeMap<String, String>,
}

/// Where cmd/go looks for the user's GOENV file, from the build's environment.
pub fn goenv_file_path(env: &BTreeMap<String, String>) -> Option<PathBuf> {
    let nonempty = |name: &str| env.get(name).filter(|v| !v.is_empty());
    if let Some(goenv) = nonempty("GOENV") {
        return (goenv != "off").then(|| PathBuf::from(goenv));
    }
    if let Some(xdg) = nonempty("XDG_CONFIG_HOME") {
        return Some(Path::new(xdg).join("go/env"));
    }
    nonempty("HOME").map(|home| Path::new(home).join(".config/go/env"))
}

/// $GOROOT: from the environment, else the directory above the `bin/` the Go
/// command was executed from (after resolving symlinks such as /usr/bin/go).
/// Paths are the build's own, resolved inside its `root`.
pub fn goroot(env: &BTreeMap<String, String>, executable: &str, root: &BuildRoot) -> Option<PathBuf> {
    if let Some(root) = env.get("GOROOT").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(root));
    }
    let resolved = root.resolve_links(Path::new(executable))?;
    let bin = resolved.parent()?;
    (bin.file_name()? == "bin").then(|| bin.parent().map(Path::to_path_buf)).flatten()
}

/// What was read of a build's configuration files, and what was refused (notes
/// such as `GOENV /dev/zero: not read (not a regular file: a character device)`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigRead {
    pub goenv_file: Option<ConfigFile>,
    pub goroot_go_env: Option<ConfigFile>,
    pub go_mod: Option<GoModFile>,
    pub refused: Vec<String>,
}

impl ConfigRead {
    /// Nothing read, for one reason (the process had exited, the read timed out…).
    pub fn refused(reason: &str) -> ConfigRead {
        ConfigRead { refused: vec![format!("config files: not read ({reason})")], ..ConfigRead::default() }
    }
}

/// One file of the build, or None (a missing file is no file; a refused one is
/// noted in `refused` as `WHAT PATH: not read (REASON)`).
fn read_noted(root: &BuildRoot, what: &str, path: &Path, refused: &mut Vec<String>) -> Option<String> {
    match root.read(path) {
        Ok(text) => Some(text),
        Err(Unread::Missing) => None,
        Err(Unread::Refused(reason)) => {
            refused.push(format!("{what} {}: not read ({reason})", path.display()));
            None
        }
    }
}

/// Reads a build's configuration files inside its root (I/O: the capture calls
/// this off the event path, so that what was read is recorded and replays
/// without the files): the GOENV file, $GOROOT/go.env, and the go.mod cmd/go
/// uses for a build started in `cwd`. Paths are reported as the build sees them.
pub fn read_files(env: &BTreeMap<String, String>, executable: &str, cwd: Option<&Path>, root: &BuildRoot) -> ConfigRead {
    let mut refused = Vec::new();
    let mut read = |what: &str, path: PathBuf| -> Option<ConfigFile> {
        let text = read_noted(root, what, &path, &mut refused)?;
        Some(ConfigFile { path: path.display().to_string(), vars: parse_env_file(&text) })
    };
    let goenv_file = goenv_file_path(env).and_then(|path| read("GOENV", path));
    let goroot_go_env = goroot(env, executable, root).and_then(|dir| read("GOROOT/go.env", dir.join("go.env")));
    let go_mod = cwd.and_then(|cwd| read_go_mod(cwd, root, &mut refused));
    ConfigRead { goenv_file, goroot_go_env, go_mod, refused }
}

/// The effective value and source of each reported setting, as cmd/go resolves it:
/// a non-empty environment value, else the GOENV file, else $GOROOT/go.env, else
/// the built-in default.
pub fn effective(
    env: &BTreeMap<String, String>,
    goenv_file: Option<&ConfigFile>,
    goroot_go_env: Option<&ConfigFile>,
) -> BTreeMap<String, ConfigValue> {
    let mut config = BTreeMap::new();
    let value = |v: &str, source: &str| ConfigValue { value: v.to_string(), source: source.to_string() };
    for name in VARIABLES.into_iter().filter(|v| !NOT_REPORTED.contains(v)) {
        let from_env = env.get(name).filter(|v| !v.is_empty()).map(|v| value(v, "env"));
        let from_files = if ENV_ONLY.contains(&name) {
            None
        } else {
            goenv_file
                .and_then(|f| f.vars.get(name))
                .filter(|v| !v.is_empty())
                .map(|v| value(v, "goenv_file"))
                .or_else(|| goroot_go_env.and_then(|f| f.vars.get(name)).filter(|v| !v.is_empty()).map(|v| value(v, "goroot_go_env")))
        };
        if let Some(found) = from_env.or(from_files) {
            config.insert(name.to_string(), found);
        }
    }
    let lower = |upper: &str, lower: &str, config: &mut BTreeMap<String, ConfigValue>| {
        if !config.contains_key(upper)
            && let Some(v) = env.get(lower).filter(|v| !v.is_empty())
        {
            config.insert(upper.to_string(), value(v, "env"));
        }
    };
    lower("HTTPS_PROXY", "https_proxy", &mut config);
    lower("HTTP_PROXY", "http_proxy", &mut config);
    config.entry("GOPROXY".into()).or_insert_with(|| value(DEFAULT_GOPROXY, "default"));
    config.entry("GOSUMDB".into()).or_insert_with(|| value(DEFAULT_GOSUMDB, "default"));
    let private = config.get("GOPRIVATE").map(|v| v.value.clone());
    if let Some(private) = private {
        for derived in ["GONOPROXY", "GONOSUMDB"] {
            config.entry(derived.into()).or_insert_with(|| value(&private, "default"));
        }
    }
    if !config.contains_key("GOPATH")
        && let Some(home) = env.get("HOME").filter(|v| !v.is_empty())
    {
        config.insert("GOPATH".into(), value(&format!("{home}/go"), "default"));
    }
    if !config.contains_key("GOMODCACHE")
        && let Some(gopath) = config.get("GOPATH").map(|v| v.value.clone())
    {
        let first = gopath.split(':').next().unwrap_or_default();
        config.insert("GOMODCACHE".into(), value(&format!("{first}/pkg/mod"), "default"));
    }
    config
}

/// The module cache directory as cmd/go names the files in it: GOMODCACHE cleaned
/// the way `filepath.Join` cleans (no `.`, `..`, repeated or trailing `/`). None
/// when it is not absolute (cmd/go refuses such a cache).
pub fn module_cache(config: &BTreeMap<String, ConfigValue>) -> Option<String> {
    let value = &config.get("GOMODCACHE")?.value;
    let path = Path::new(value);
    if !path.is_absolute() {
        return None;
    }
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in path.components() {
        match component {
            std::path::Component::Normal(part) => parts.push(part),
            std::path::Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    let cleaned: PathBuf = std::iter::once(std::ffi::OsStr::new("/")).chain(parts).collect();
    cleaned.to_str().map(str::to_string)
}

/// One entry of a GOPROXY list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyEntry {
    /// A proxy URL; `any_error` is true when a `|` follows it (Go 1.15+): the next
    /// entry is tried on any error, not only on 404/410.
    Url { url: String, any_error: bool },
    Direct,
    Off,
}

/// Parses a GOPROXY value (src/cmd/go/internal/modfetch/proxy.go).
pub fn proxy_list(value: &str) -> Vec<ProxyEntry> {
    let mut entries = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        let end = rest.find([',', '|']).unwrap_or(rest.len());
        let item = rest[..end].trim();
        let any_error = rest[end..].starts_with('|');
        rest = rest.get(end + 1..).unwrap_or("");
        match item {
            "" => {}
            "direct" => entries.push(ProxyEntry::Direct),
            "off" => entries.push(ProxyEntry::Off),
            url if url.contains("://") => entries.push(ProxyEntry::Url { url: url.to_string(), any_error }),
            bare => entries.push(ProxyEntry::Url { url: format!("https://{bare}"), any_error }),
        }
    }
    entries
}

/// The checksum database a GOSUMDB value names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SumDb {
    Off,
    On { name: String, url: String },
}

/// Parses GOSUMDB: `off`, `name`, `name+key`, or `name+key url`.
pub fn sumdb(value: &str) -> SumDb {
    let value = value.trim();
    if value == "off" {
        return SumDb::Off;
    }
    let mut parts = value.split_whitespace();
    let key = parts.next().unwrap_or(DEFAULT_GOSUMDB);
    let name = key.split('+').next().unwrap_or(key).to_string();
    let url = parts.next().map_or_else(|| format!("https://{name}"), str::to_string);
    SumDb::On { name, url }
}

/// Go's module.MatchPrefixPatterns: does any comma-separated glob match a leading
/// run of path elements of `module`?
pub fn match_prefix_patterns(patterns: &str, module: &str) -> bool {
    let options = glob::MatchOptions { require_literal_separator: true, ..Default::default() };
    patterns.split(',').map(str::trim).filter(|p| !p.is_empty()).any(|pattern| {
        let elements = pattern.split('/').count();
        let prefix: Vec<&str> = module.split('/').take(elements).collect();
        prefix.len() == elements
            && glob::Pattern::new(pattern).is_ok_and(|g| g.matches_with(&prefix.join("/"), options))
    })
}

/// Host (and port) of a URL, lower-cased, without userinfo.
pub fn url_host(url: &str) -> Option<(String, Option<u16>)> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    if authority.is_empty() {
        return None;
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            match port.parse() {
                Ok(port) => Some((host.trim_matches(['[', ']']).to_ascii_lowercase(), Some(port))),
                Err(_) => Some((authority.to_ascii_lowercase(), None)),
            }
        }
        _ => Some((authority.trim_matches(['[', ']']).to_ascii_lowercase(), None)),
    }
}

/// The module paths a go.mod names: its `require`d modules and the module
/// paths `replace` points at (a local directory is not one). Comments, quotes
/// and versions are dropped; anything else is ignored.
pub fn go_mod_modules(text: &str) -> Vec<String> {
    let mut modules: Vec<String> = Vec::new();
    let mut block: Option<&str> = None;
    for line in text.lines() {
        let line = line.split("//").next().unwrap_or("").trim();
        let (verb, rest) = match block {
            Some(verb) if line == ")" => {
                let _ = verb;
                block = None;
                continue;
            }
            Some(verb) => (verb, line),
            None => {
                let (verb, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
                if rest.trim() == "(" {
                    block = Some(verb);
                    continue;
                }
                (verb, rest.trim())
            }
        };
        let path = match verb {
            "require" => rest.split_whitespace().next(),
            "replace" => rest.split_once("=>").and_then(|(_, to)| to.split_whitespace().next()),
            _ => None,
        };
        if let Some(path) = path.map(|p| p.trim_matches('"'))
            && !path.is_empty()
            && !path.starts_with(['.', '/'])
            && !modules.iter().any(|m| m == path)
        {
            modules.push(path.to_string());
        }
    }
    modules
}

/// The main module's go.mod as read for a build: where, and the module paths it
/// names (their first elements are the hosts a direct fetch would contact).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoModFile {
    pub path: String,
    pub modules: Vec<String>,
}

/// The go.mod cmd/go uses for a build started in `cwd` (as the build sees it):
/// the first one found walking up, inside the build's `root`. A refused one ends
/// the walk (cmd/go would stop there too, with an error).
fn read_go_mod(cwd: &Path, root: &BuildRoot, refused: &mut Vec<String>) -> Option<GoModFile> {
    let mut dir = buildfs::clean(cwd);
    for _ in 0..64 {
        let path = dir.join("go.mod");
        let before = refused.len();
        if let Some(text) = read_noted(root, "go.mod", &path, refused) {
            return Some(GoModFile { path: path.display().to_string(), modules: go_mod_modules(&text) });
        }
        if refused.len() > before || !dir.pop() {
            break;
        }
    }
    None
}

/// Could a GONOPROXY/GOPRIVATE pattern list cover modules whose path starts with
/// `host`? (Only the first path element of each pattern can be checked.)
pub fn patterns_may_cover_host(patterns: &str, host: &str) -> bool {
    patterns
        .split(',')
        .filter_map(|p| p.trim().split('/').next())
        .filter(|first| !first.is_empty())
        .any(|first| match_prefix_patterns(first, host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn environment_block_keeps_go_settings_only_and_redacts() {
        let block = b"PATH=/bin\0GOPROXY=https://u:p@proxy.corp,direct\0AWS_SECRET=x\0HOME=/root\0";
        let vars = relevant_environment(block);
        assert_eq!(vars.len(), 2);
        assert_eq!(vars["GOPROXY"], "https://REDACTED@proxy.corp,direct");
        assert!(!vars.contains_key("AWS_SECRET"));
    }

    #[test]
    fn config_files_are_read_inside_the_builds_root() {
        // A container's root as seen from the host: /usr/bin/go links (absolutely)
        // to the toolchain, which must be found inside that root, not ours.
        let root = tempfile::tempdir().unwrap();
        let at = |p: &str| root.path().join(p);
        std::fs::create_dir_all(at("usr/lib/go-9/bin")).unwrap();
        std::fs::create_dir_all(at("usr/bin")).unwrap();
        std::fs::create_dir_all(at("home/b/.config/go")).unwrap();
        std::fs::write(at("usr/lib/go-9/bin/go"), "").unwrap();
        std::os::unix::fs::symlink("/usr/lib/go-9/bin/go", at("usr/bin/go")).unwrap();
        std::fs::write(at("usr/lib/go-9/go.env"), "GOPROXY=https://goroot.example\nGOTOOLCHAIN=auto\n").unwrap();
        std::fs::write(at("home/b/.config/go/env"), "GOPRIVATE=corp.example\n").unwrap();
        let fs = BuildRoot::open(root.path()).unwrap();
        let read = read_files(&env(&[("HOME", "/home/b")]), "/usr/bin/go", None, &fs);
        assert!(read.refused.is_empty(), "{:?}", read.refused);
        let (goenv, go_env) = (read.goenv_file, read.goroot_go_env);
        let goenv = goenv.expect("the GOENV file in the build's root");
        assert_eq!((goenv.path.as_str(), goenv.vars["GOPRIVATE"].as_str()), ("/home/b/.config/go/env", "corp.example"));
        let go_env = go_env.expect("go.env of the toolchain in the build's root");
        assert_eq!((go_env.path.as_str(), go_env.vars["GOPROXY"].as_str()), ("/usr/lib/go-9/go.env", "https://goroot.example"));
        // Relative links and `..` resolve the same way.
        std::fs::remove_file(at("usr/bin/go")).unwrap();
        std::os::unix::fs::symlink("../lib/go-9/bin/go", at("usr/bin/go")).unwrap();
        assert_eq!(goroot(&env(&[]), "/usr/bin/go", &fs), Some(PathBuf::from("/usr/lib/go-9")));
        // A link loop is no GOROOT, not a hang.
        std::os::unix::fs::symlink("/usr/bin/loop", at("usr/bin/loop")).unwrap();
        assert_eq!(goroot(&env(&[]), "/usr/bin/loop", &fs), None);
    }

    #[test]
    fn sources_follow_cmd_go_precedence() {
        let file = ConfigFile { path: "/h/.config/go/env".into(), vars: env(&[("GOPROXY", "https://file.example"), ("GOPRIVATE", "corp.example")]) };
        let goroot = ConfigFile { path: "/go/go.env".into(), vars: env(&[("GOPROXY", "https://proxy.golang.org,direct"), ("GOSUMDB", "sum.golang.org")]) };
        // The environment wins, but an empty value does not count.
        let c = effective(&env(&[("GOPROXY", "https://env.example"), ("GOSUMDB", ""), ("HOME", "/h")]), Some(&file), Some(&goroot));
        assert_eq!((c["GOPROXY"].value.as_str(), c["GOPROXY"].source.as_str()), ("https://env.example", "env"));
        assert_eq!(c["GOSUMDB"].source, "goroot_go_env");
        assert_eq!((c["GOPRIVATE"].source.as_str(), c["GONOSUMDB"].value.as_str(), c["GONOSUMDB"].source.as_str()), ("goenv_file", "corp.example", "default"));
        assert_eq!(c["GOMODCACHE"].value, "/h/go/pkg/mod");
        let cache = |v: &str| module_cache(&effective(&env(&[("GOMODCACHE", v)]), None, None));
        assert_eq!(cache("/h//go/./x/../pkg/mod/").as_deref(), Some("/h/go/pkg/mod"));
        assert_eq!(cache("relative/mod"), None);
        let c = effective(&env(&[("HOME", "/h")]), Some(&file), None);
        assert_eq!(c["GOPROXY"].source, "goenv_file");
        let c = effective(&env(&[]), None, None);
        assert_eq!((c["GOPROXY"].value.as_str(), c["GOPROXY"].source.as_str()), (DEFAULT_GOPROXY, "default"));
        assert_eq!(c["GOSUMDB"].value, "sum.golang.org");
    }

    #[test]
    fn goenv_file_location() {
        assert_eq!(goenv_file_path(&env(&[("GOENV", "off"), ("HOME", "/h")])), None);
        assert_eq!(goenv_file_path(&env(&[("GOENV", "/x/env")])), Some("/x/env".into()));
        assert_eq!(goenv_file_path(&env(&[("XDG_CONFIG_HOME", "/c"), ("HOME", "/h")])), Some("/c/go/env".into()));
        assert_eq!(goenv_file_path(&env(&[("HOME", "/h")])), Some("/h/.config/go/env".into()));
    }

    #[test]
    fn proxy_lists() {
        assert_eq!(
            proxy_list("https://a.example|proxy.corp,direct"),
            vec![
                ProxyEntry::Url { url: "https://a.example".into(), any_error: true },
                ProxyEntry::Url { url: "https://proxy.corp".into(), any_error: false },
                ProxyEntry::Direct,
            ]
        );
        assert_eq!(proxy_list("off"), vec![ProxyEntry::Off]);
    }

    #[test]
    fn sumdb_forms() {
        assert_eq!(sumdb("off"), SumDb::Off);
        assert_eq!(sumdb("sum.golang.org"), SumDb::On { name: "sum.golang.org".into(), url: "https://sum.golang.org".into() });
        assert_eq!(
            sumdb("sum.corp+033de0ae+AbCd https://sumdb.corp/x"),
            SumDb::On { name: "sum.corp".into(), url: "https://sumdb.corp/x".into() }
        );
    }

    #[test]
    fn prefix_patterns_match_like_go() {
        assert!(match_prefix_patterns("corp.example", "corp.example/x/y"));
        assert!(match_prefix_patterns("*.corp.example", "git.corp.example/x"));
        assert!(!match_prefix_patterns("*.corp.example", "corp.example/x"));
        assert!(match_prefix_patterns("github.com/acme/*", "github.com/acme/tool/v2"));
        assert!(!match_prefix_patterns("github.com/acme/*", "github.com/other/tool"));
        assert!(match_prefix_patterns("*", "anything/at/all"));
        assert!(!match_prefix_patterns("", "x"));
    }

    #[test]
    fn go_mod_names_required_and_replacing_modules() {
        let text = "module example.com/app\n\ngo 1.21\n\nrequire (\n\tgone.lab.test/x v1.0.0 // indirect\n\t\"go.uber.org/zap\" v1.27.0\n)\nrequire github.com/a/b v0.1.0\nreplace github.com/a/b => corp.example/fork/b v0.1.1\nreplace example.com/c => ../c\nexclude example.com/d v1.0.0\n";
        assert_eq!(
            go_mod_modules(text),
            ["gone.lab.test/x", "go.uber.org/zap", "github.com/a/b", "corp.example/fork/b"]
        );
        assert!(go_mod_modules("garbage (\n").is_empty());
    }

    #[test]
    fn go_mod_is_found_walking_up_inside_the_builds_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("src/app/cmd/tool")).unwrap();
        std::fs::write(root.path().join("src/app/go.mod"), "module x\nrequire a.example/m v1.0.0\n").unwrap();
        let fs = BuildRoot::open(root.path()).unwrap();
        let mut refused = Vec::new();
        let found = read_go_mod(Path::new("/src/app/cmd/tool"), &fs, &mut refused).expect("found above");
        assert_eq!((found.path.as_str(), found.modules.as_slice()), ("/src/app/go.mod", &["a.example/m".to_string()][..]));
        assert!(read_go_mod(Path::new("/"), &fs, &mut refused).is_none());
        assert!(refused.is_empty());
        // A FIFO on the way is refused, noted, and ends the walk (the go.mod above
        // is not taken instead).
        nix::unistd::mkfifo(&root.path().join("src/app/cmd/go.mod"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert!(read_go_mod(Path::new("/src/app/cmd/tool"), &fs, &mut refused).is_none());
        assert_eq!(refused, ["go.mod /src/app/cmd/go.mod: not read (not a regular file: a FIFO)"]);
    }

    /// Catches reads that follow links with our root, read FIFOs or devices, or
    /// drop refusals silently: every file of a hostile build's configuration is
    /// refused with a note naming it, and nothing of the host's is read.
    #[test]
    fn hostile_configuration_files_are_refused_with_notes() {
        let root = tempfile::tempdir().unwrap();
        let at = |p: &str| root.path().join(p);
        for dir in ["home/u/.config/go", "go/bin", "src/app", "etc"] {
            std::fs::create_dir_all(at(dir)).unwrap();
        }
        std::os::unix::fs::symlink("/etc/passwd", at("home/u/.config/go/env")).unwrap();
        std::fs::write(at("go/bin/go"), "").unwrap();
        nix::unistd::mkfifo(&at("go/go.env"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        std::fs::write(at("src/app/go.mod"), vec![b'x'; 100 << 10]).unwrap();
        let fs = BuildRoot::open(root.path()).unwrap();
        let started = std::time::Instant::now();
        let read = read_files(&env(&[("HOME", "/home/u")]), "/go/bin/go", Some(Path::new("/src/app")), &fs);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // /etc/passwd of the build's root does not exist: no file, no note.
        assert_eq!(read.goenv_file, None);
        assert_eq!(
            read.refused,
            ["GOROOT/go.env /go/go.env: not read (not a regular file: a FIFO)", "go.mod /src/app/go.mod: not read (larger than 64 KiB)"]
        );
        // With its own /etc/passwd (the GOENV link's target), that one is read.
        std::fs::write(at("etc/passwd"), "GOPROXY=https://inside.example\n").unwrap();
        let read = read_files(&env(&[("HOME", "/home/u")]), "/go/bin/go", None, &fs);
        assert_eq!(read.goenv_file.map(|f| f.vars["GOPROXY"].clone()).as_deref(), Some("https://inside.example"));
    }

    #[test]
    fn url_hosts() {
        assert_eq!(url_host("https://u:p@Proxy.Corp:8443/go"), Some(("proxy.corp".into(), Some(8443))));
        assert_eq!(url_host("http://10.0.0.1:3128"), Some(("10.0.0.1".into(), Some(3128))));
        assert_eq!(url_host("https://[2001:db8::1]:443/x"), Some(("2001:db8::1".into(), Some(443))));
        assert_eq!(url_host(""), None);
    }
}
