//! The Go configuration a build controls: its environment block, its GOENV file
//! and $GOROOT/go.env, its go.mod, and the GOPROXY/GOSUMDB/GOPRIVATE/GONOSUMDB
//! values they set (NO_PROXY and the proxies are kept, redacted). Parsed and
//! resolved as the daemon does: nothing panics.
//!
//! Values are kept through `redact::value`; whether that removes every
//! credential is the `redact` target's question (it plants a secret in each
//! position and looks for it). Re-checking kept values here (redacting again
//! changes nothing, or no userinfo is left) gave false alarms on garbled values,
//! where one rule's replacement (dropping a `/`) makes text that the URL rule
//! then reads differently.
//!
//! Input: the parts separated by 0xFF (never in UTF-8 text): environment block
//! (`NAME=value\0…`), GOENV file, $GOROOT/go.env, go.mod, a module path.
#![no_main]

use gomod_trace::goenv::{self, ConfigFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let mut parts = input.split(|&b| b == 0xff);
    let mut next = || parts.next().unwrap_or_default();
    let (block, goenv_text, go_env_text, go_mod_text, module) = (next(), next(), next(), next(), next());
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();

    let env = goenv::relevant_environment(block);
    let goenv_file = ConfigFile {
        path: "/root/.config/go/env".into(),
        vars: goenv::parse_env_file(&text(goenv_text)),
    };
    let go_env = ConfigFile {
        path: "/usr/lib/go/go.env".into(),
        vars: goenv::parse_env_file(&text(go_env_text)),
    };
    let _ = goenv::goenv_file_path(&env);

    let config = goenv::effective(&env, Some(&goenv_file), Some(&go_env));
    let _ = goenv::module_cache(&config);
    let value = |name: &str| config.get(name).map(|v| v.value.as_str()).unwrap_or_default();
    for entry in goenv::proxy_list(value("GOPROXY")) {
        if let goenv::ProxyEntry::Url { url, .. } = entry {
            let _ = goenv::url_host(&url);
        }
    }
    if let goenv::SumDb::On { url, .. } = goenv::sumdb(value("GOSUMDB")) {
        let _ = goenv::url_host(&url);
    }
    for proxy in ["HTTPS_PROXY", "HTTP_PROXY"] {
        let _ = goenv::url_host(value(proxy));
    }
    let mut modules = goenv::go_mod_modules(&text(go_mod_text));
    modules.push(text(module));
    for module in modules.iter().take(8) {
        for patterns in ["GOPRIVATE", "GONOPROXY", "GONOSUMDB"] {
            let _ = goenv::match_prefix_patterns(value(patterns), module);
            let host = module.split('/').next().unwrap_or_default();
            let _ = goenv::patterns_may_cover_host(value(patterns), host);
        }
    }
});
