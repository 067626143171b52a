//! The endpoint table of a build: every remote end its Go configuration names
//! (each GOPROXY entry, the checksum database, the HTTP(S) proxies), keyed by
//! (host name or address, port), with the configuration entry it came from.
//! A socket's role is looked up here by what identifies its peer (the address it
//! connected to, the name the build resolved that address from, the SNI it sent,
//! the CONNECT target it asked a proxy for), never by comparing names in a rule.
use std::{collections::BTreeMap, net::IpAddr};

use crate::{
    goenv::{self, ProxyEntry, SumDb},
    timeline::{ConfigValue, Role},
};

/// A host as the configuration writes it: a name, or an address literal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Name(String),
    Addr(IpAddr),
}

impl Host {
    /// A host from a URL or a `host` field: addresses are parsed, names
    /// lower-cased without a trailing dot.
    pub fn parse(host: &str) -> Host {
        let host = host.trim_matches(['[', ']']);
        match host.parse::<IpAddr>() {
            Ok(addr) => Host::Addr(addr),
            Err(_) => Host::Name(host.trim_end_matches('.').to_ascii_lowercase()),
        }
    }
}

/// Which setting an endpoint comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The entry at `index` (from 0) of GOPROXY (its separator is in
    /// [`EndpointTable::proxies`]).
    Proxy { index: usize },
    /// GOSUMDB, with the database's name.
    Sumdb { name: String },
    /// HTTPS_PROXY or HTTP_PROXY.
    HttpProxy { variable: &'static str },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: Host,
    pub port: u16,
    /// The URL's path without its trailing `/` (`/go` of `https://proxy.corp/go`).
    pub path: String,
    /// The URL as configured (already redacted).
    pub url: String,
    pub source: Source,
}

impl Endpoint {
    pub fn role(&self) -> Role {
        match self.source {
            Source::Proxy { .. } => Role::Proxy,
            Source::Sumdb { .. } => Role::Sumdb,
            Source::HttpProxy { .. } => Role::HttpsProxy,
        }
    }

    /// The GOPROXY entry index, for proxies.
    pub fn proxy_index(&self) -> Option<usize> {
        match self.source {
            Source::Proxy { index } => Some(index),
            _ => None,
        }
    }

    /// How the timeline names the configuration entry: `GOPROXY[1] https://…`
    /// (entries counted from 1, as people read the list).
    pub fn label(&self) -> String {
        match &self.source {
            Source::Proxy { index } => format!("GOPROXY[{}] {}", index + 1, self.url),
            Source::Sumdb { .. } => format!("GOSUMDB {}", self.url),
            Source::HttpProxy { variable } => format!("{variable} {}", self.url),
        }
    }
}

/// The endpoints of one build's configuration.
#[derive(Debug, Clone, Default)]
pub struct EndpointTable {
    pub endpoints: Vec<Endpoint>,
    /// GOPROXY in order (including `direct` and `off`).
    pub proxies: Vec<ProxyEntry>,
    /// May cmd/go fetch directly from version control (GOPROXY lists `direct`, or
    /// GONOPROXY/GOPRIVATE send some modules there)?
    pub direct_possible: bool,
    /// GONOPROXY, or GOPRIVATE when it is unset: modules fetched directly.
    pub noproxy: String,
}

/// Host, port and path of a URL, with the scheme's default port.
fn parse_url(url: &str, default_scheme: &str) -> Option<(Host, u16, String)> {
    let (scheme, rest) = url.split_once("://").unwrap_or((default_scheme, url));
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" => 443,
        "http" => 80,
        "socks5" | "socks5h" => 1080,
        _ => return None,
    };
    let (host, port) = goenv::url_host(url)?;
    let path = rest.find('/').map_or("", |at| &rest[at..]);
    let path = path.split(['?', '#']).next().unwrap_or("").trim_end_matches('/').to_string();
    Some((Host::parse(&host), port.unwrap_or(default_port), path))
}

impl EndpointTable {
    pub fn from_config(config: &BTreeMap<String, ConfigValue>) -> EndpointTable {
        let get = |name: &str| config.get(name).map(|v| v.value.as_str()).unwrap_or_default();
        let proxies = goenv::proxy_list(get("GOPROXY"));
        let mut endpoints = Vec::new();
        for (index, entry) in proxies.iter().enumerate() {
            if let ProxyEntry::Url { url, .. } = entry
                && let Some((host, port, path)) = parse_url(url, "https")
            {
                endpoints.push(Endpoint { host, port, path, url: url.clone(), source: Source::Proxy { index } });
            }
        }
        if let SumDb::On { name, url } = goenv::sumdb(get("GOSUMDB"))
            && let Some((host, port, path)) = parse_url(&url, "https")
        {
            endpoints.push(Endpoint { host, port, path, url, source: Source::Sumdb { name } });
        }
        for variable in ["HTTPS_PROXY", "HTTP_PROXY"] {
            let value = get(variable);
            // Go's httpproxy: a value without a scheme is an http:// proxy.
            if !value.is_empty()
                && let Some((host, port, path)) = parse_url(value, "http")
            {
                let url = if value.contains("://") { value.to_string() } else { format!("http://{value}") };
                endpoints.push(Endpoint { host, port, path, url, source: Source::HttpProxy { variable } });
            }
        }
        let noproxy = if get("GONOPROXY").is_empty() { get("GOPRIVATE") } else { get("GONOPROXY") }.to_string();
        let direct_possible = proxies.contains(&ProxyEntry::Direct) || !noproxy.is_empty();
        EndpointTable { endpoints, proxies, direct_possible, noproxy }
    }

    /// The endpoints a peer is: by its address, or by the names it is known by
    /// (SNI, Host, the DNS name the address came from), on its port.
    /// A name matches an entry's host when it is that host, or that host with a
    /// search domain appended (what the resolver asked for under ndots).
    pub fn lookup(&self, addr: Option<IpAddr>, names: &[&str], port: u16) -> Vec<usize> {
        let names: Vec<Host> = names.iter().map(|n| Host::parse(n)).collect();
        let named = |host: &str| {
            names.iter().any(|n| match n {
                Host::Name(n) => n == host || n.strip_prefix(host).is_some_and(|rest| rest.starts_with('.')),
                Host::Addr(_) => false,
            })
        };
        self.endpoints
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                e.port == port
                    && match &e.host {
                        Host::Addr(a) => Some(*a) == addr || names.contains(&e.host),
                        Host::Name(host) => named(host),
                    }
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// The one endpoint of a request target among `candidates` (several GOPROXY
    /// entries on one host and port differ by their paths): the longest path that
    /// prefixes the target.
    pub fn by_path(&self, candidates: &[usize], target: &str) -> Option<usize> {
        // An absolute-form target (through an HTTP proxy) starts with the URL's
        // scheme and authority.
        let target = match target.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/", |at| &rest[at..]),
            None => target,
        };
        let path = target.split('?').next().unwrap_or("");
        candidates
            .iter()
            .copied()
            .filter(|&i| {
                let p = &self.endpoints[i].path;
                path == p || path.starts_with(&format!("{p}/"))
            })
            .max_by_key(|&i| self.endpoints[i].path.len())
    }

    /// Is a peer that no entry names, which cmd/go itself contacts, a direct
    /// fetch's? Only when going direct is possible and the peer is where a direct
    /// fetch goes: GOPROXY is `direct` alone, or the host is a module path's (the
    /// `?go-get=1` discovery), or GONOPROXY/GOPRIVATE may send its modules there.
    /// A host a proxy redirects to (a CDN, object storage) is none of these.
    pub fn is_direct_host(&self, host: Option<&str>, module_hosts: &std::collections::HashSet<String>) -> bool {
        if !self.direct_possible {
            return false;
        }
        if self.proxies == [ProxyEntry::Direct] {
            return true;
        }
        let Some(host) = host.map(|h| h.trim_end_matches('.').to_ascii_lowercase()) else { return false };
        module_hosts.contains(&host) || goenv::patterns_may_cover_host(&self.noproxy, &host)
    }

    /// The role of a set of matching endpoints: the first one's (a table never
    /// gives one host:port two roles but through a misconfiguration).
    pub fn role_of(&self, matched: &[usize]) -> Option<Role> {
        matched.first().map(|&i| self.endpoints[i].role())
    }

    /// The endpoints of GOPROXY entry `index`.
    pub fn proxy_entry(&self, index: usize) -> impl Iterator<Item = usize> + '_ {
        self.endpoints.iter().enumerate().filter(move |(_, e)| e.proxy_index() == Some(index)).map(|(i, _)| i)
    }

    /// The checksum database's endpoint and name, unless GOSUMDB=off.
    pub fn sumdb(&self) -> Option<(usize, &str)> {
        self.endpoints.iter().enumerate().find_map(|(i, e)| match &e.source {
            Source::Sumdb { name } => Some((i, name.as_str())),
            _ => None,
        })
    }

    /// The host names of the configuration (not its address literals).
    pub fn host_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .endpoints
            .iter()
            .filter_map(|e| match &e.host {
                Host::Name(n) => Some(n.clone()),
                Host::Addr(_) => None,
            })
            .collect();
        names.dedup();
        names
    }

    /// The endpoints whose host `name` (a DNS name asked by the build) is.
    pub fn named(&self, name: &str) -> Vec<usize> {
        let host = Host::parse(name);
        self.endpoints.iter().enumerate().filter(|(_, e)| e.host == host).map(|(i, _)| i).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(pairs: &[(&str, &str)]) -> EndpointTable {
        let config = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), ConfigValue { value: v.to_string(), source: "env".into() }))
            .collect();
        EndpointTable::from_config(&config)
    }

    #[test]
    fn every_form_go_accepts() {
        let t = table(&[
            ("GOPROXY", "https://REDACTED@Proxy.Corp:8443/go/,10.1.2.3|[2001:db8::7]:9000,http://plain.corp/x,direct"),
            ("GOSUMDB", "sum.corp+abc https://sumdb.corp/db"),
            ("HTTPS_PROXY", "10.9.9.9:3128"),
            ("HTTP_PROXY", "http://REDACTED@webproxy.corp"),
        ]);
        let view: Vec<(Host, u16, &str, Role)> =
            t.endpoints.iter().map(|e| (e.host.clone(), e.port, e.path.as_str(), e.role())).collect();
        let name = |n: &str| Host::Name(n.into());
        let addr = |a: &str| Host::Addr(a.parse().unwrap());
        assert_eq!(
            view,
            vec![
                (name("proxy.corp"), 8443, "/go", Role::Proxy),
                (addr("10.1.2.3"), 443, "", Role::Proxy),
                (addr("2001:db8::7"), 9000, "", Role::Proxy),
                (name("plain.corp"), 80, "/x", Role::Proxy),
                (name("sumdb.corp"), 443, "/db", Role::Sumdb),
                (addr("10.9.9.9"), 3128, "", Role::HttpsProxy),
                (name("webproxy.corp"), 80, "", Role::HttpsProxy),
            ]
        );
        assert_eq!(t.endpoints[1].proxy_index(), Some(1));
        assert_eq!(t.endpoints[1].source, Source::Proxy { index: 1 });
        assert_eq!(t.endpoints[0].label(), "GOPROXY[1] https://REDACTED@Proxy.Corp:8443/go/");
        assert_eq!(t.endpoints[5].label(), "HTTPS_PROXY http://10.9.9.9:3128");
        assert!(t.direct_possible);
        assert_eq!(t.sumdb().map(|(_, n)| n), Some("sum.corp"));
    }

    #[test]
    fn lookup_by_address_literal_or_name_and_port() {
        let t = table(&[("GOPROXY", "https://10.1.2.3,https://proxy.corp:8443"), ("GOSUMDB", "sum.golang.org")]);
        let a: IpAddr = "10.1.2.3".parse().unwrap();
        let other: IpAddr = "10.7.7.7".parse().unwrap();
        assert_eq!(t.lookup(Some(a), &[], 443), vec![0]);
        assert_eq!(t.lookup(Some(a), &[], 80), Vec::<usize>::new(), "another port is another endpoint");
        assert_eq!(t.lookup(Some(other), &["PROXY.corp."], 8443), vec![1]);
        assert_eq!(t.lookup(Some(other), &["proxy.corp"], 443), Vec::<usize>::new());
        assert_eq!(t.lookup(Some(other), &["sum.golang.org"], 443), vec![2]);
        // A search-list expansion the resolver answered for is the same host.
        assert_eq!(t.lookup(Some(other), &["proxy.corp.svc.cluster.local"], 8443), vec![1]);
        assert_eq!(t.lookup(Some(other), &["proxy.corpx"], 8443), Vec::<usize>::new());
        assert!(!t.direct_possible);
        assert!(table(&[("GOPROXY", "https://p"), ("GOPRIVATE", "corp.example")]).direct_possible);
    }

    #[test]
    fn entries_on_one_host_differ_by_path() {
        let t = table(&[("GOPROXY", "https://p.corp/a|https://p.corp/a/b,https://p.corp")]);
        let all = t.lookup(None, &["p.corp"], 443);
        assert_eq!(all, vec![0, 1, 2]);
        assert_eq!(t.by_path(&all, "/a/b/lab.test/x/@v/list"), Some(1));
        assert_eq!(t.by_path(&all, "/a/lab.test/x/@v/list"), Some(0));
        assert_eq!(t.by_path(&all, "/ab/lab.test/x/@v/list"), Some(2));
        assert_eq!(t.by_path(&all, "/lab.test/x/@v/list?x=1"), Some(2));
        assert_eq!(t.by_path(&all, "http://p.corp/a/b/lab.test/x/@v/list"), Some(1));
    }
}
