//! A build's working state made into its timeline: every socket's role from the
//! endpoint table, module outcomes, what is still open closed as unfinished, the
//! findings, and the contract's JSON shape. The state is settled here first;
//! the rules then only read it.
use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::{
    endpoints::{EndpointTable, Host},
    findings::{self, Settings},
    lookups,
    state::{BuildState, Peer, is_vcs_command},
};
use crate::timeline::{self, Build, Outcome, Role, Span, SpanKind};

/// The shortest time Go's resolver waits for an answer.
const MIN_DNS_TIMEOUT_NS: u64 = 1_000_000_000;

/// What one process of the build is, for deciding who a socket talks to.
struct ProcessInfo<'a> {
    comm: &'a str,
    /// cmd/go's own telemetry child (`go ** telemetry **`): not a fetch.
    telemetry: bool,
}

/// Who a build is: what its processes are, and the hosts of the modules it
/// wants.
struct Context<'a> {
    table: &'a EndpointTable,
    processes: HashMap<u32, ProcessInfo<'a>>,
    root_comm: Option<&'a str>,
    module_hosts: HashSet<String>,
}

impl Context<'_> {
    /// The role of a peer (`host`) that no configuration entry names: version
    /// control when a VCS command cmd/go ran talks to it, or cmd/go itself does
    /// and it is where a direct fetch goes; otherwise something else.
    fn unnamed_role(&self, pid: u32, host: Option<&str>) -> Role {
        let Some(process) = self.processes.get(&pid) else { return Role::Other };
        if is_vcs_command(process.comm) {
            return Role::Vcs;
        }
        let cmd_go = self.root_comm.is_some_and(|root| root == process.comm) && !process.telemetry;
        if cmd_go && self.table.is_direct_host(host, &self.module_hosts) { Role::Vcs } else { Role::Other }
    }
}

/// `host:port` of a CONNECT target.
fn split_target(target: &str) -> Option<(&str, u16)> {
    let (host, port) = target.rsplit_once(':')?;
    Some((host.trim_matches(['[', ']']), port.parse().ok()?))
}

struct Roles {
    role: Role,
    endpoints: Vec<usize>,
    target: Option<(Role, Vec<usize>)>,
}

fn peer_roles(cx: &Context, peer: &Peer) -> Roles {
    let table = cx.table;
    if peer.remote.port() == 53 {
        return Roles { role: Role::Dns, endpoints: Vec::new(), target: None };
    }
    // The name the build used for this peer: outside a tunnel its SNI, else the
    // Host it sent, else the DNS name its address came from (one address may
    // serve several names: the one the client asked for decides).
    let own = peer.tunnel.is_none().then(|| {
        peer.sni.as_deref().or(peer.host_header.as_deref().map(|h| split_target(h).map_or(h, |(host, _)| host)))
    });
    let names: Vec<&str> = own.flatten().or(peer.name.as_deref()).into_iter().collect();
    let endpoints = table.lookup(Some(peer.remote.ip()), &names, peer.remote.port());
    let role = table.role_of(&endpoints).unwrap_or_else(|| cx.unnamed_role(peer.pid, names.first().copied()));
    let target = peer.tunnel.as_deref().and_then(split_target).map(|(host, port)| {
        let addr = match Host::parse(host) {
            Host::Addr(a) => Some(a),
            Host::Name(_) => None,
        };
        let mut names = vec![host];
        names.extend(peer.sni.as_deref());
        let endpoints = table.lookup(addr, &names, port);
        let role = table.role_of(&endpoints).unwrap_or_else(|| cx.unnamed_role(peer.pid, Some(host)));
        (role, endpoints)
    });
    Roles { role, endpoints, target }
}

/// Labels of endpoints as attributes: `entry` for one, `entries` for several
/// (configuration entries that share a host and port).
fn label_attrs(table: &EndpointTable, endpoints: &[usize], key: &str, attrs: &mut std::collections::BTreeMap<String, Value>) {
    match endpoints {
        [] => {}
        [one] => {
            attrs.insert(key.into(), table.endpoints[*one].label().into());
        }
        several => {
            let labels: Vec<String> = several.iter().map(|&i| table.endpoints[i].label()).collect();
            attrs.insert(format!("{key}_candidates"), labels.into());
        }
    }
}

/// What each socket's peer is for this build's configuration.
fn assign_roles(build: &mut BuildState, table: &EndpointTable) {
    let processes: HashMap<u32, ProcessInfo> = build
        .spans
        .iter()
        .filter(|s| s.kind == SpanKind::Process)
        .filter_map(|s| {
            let comm = s.attrs.get("comm")?.as_str()?;
            let argv = s.attrs.get("argv").and_then(Value::as_array);
            // Its argv is `go "** telemetry **"`.
            let telemetry = argv.is_some_and(|a| a.iter().skip(1).any(|v| v.as_str().is_some_and(|v| v.contains("telemetry"))));
            Some((s.pid, ProcessInfo { comm, telemetry }))
        })
        .collect();
    let root_comm = processes.get(&build.root).map(|p| p.comm);
    // Where a direct fetch goes: the module paths' hosts, and the repositories'
    // (cmd/go checks a repository URL itself before its VCS command fetches it).
    let mut module_hosts = build.module_hosts();
    module_hosts.extend(build.vcs_urls().iter().filter_map(|url| crate::goenv::url_host(url).map(|(h, _)| h)));
    module_hosts.extend(
        build
            .peers
            .iter()
            .filter(|p| processes.get(&p.pid).is_some_and(|info| is_vcs_command(info.comm)))
            .filter_map(|p| p.sni.as_ref().or(p.name.as_ref()).map(|n| n.to_ascii_lowercase())),
    );
    let cx = Context { table, root_comm, processes, module_hosts };
    // A request the go command's client made (uprobes) is for its URL's host,
    // whatever connection carried it: the URL decides, names are not guessed.
    let requests: Vec<(usize, Role, Vec<usize>)> = build
        .spans
        .iter()
        .enumerate()
        .filter(|(_, s)| s.kind == SpanKind::Http && s.attrs.contains_key("url"))
        .filter_map(|(i, s)| {
            let host = s.host.as_deref()?;
            let addr = match Host::parse(host) {
                Host::Addr(a) => Some(a),
                Host::Name(_) => None,
            };
            let endpoints = table.lookup(addr, &[host], s.port.unwrap_or(443));
            // The URL must be under the entry's path even when one entry is on
            // that host: the same host may serve a direct fetch too (a GitLab
            // whose package API is the GOPROXY, asked `?go-get=1` for a module).
            let endpoints = match s.attrs.get("target").and_then(Value::as_str) {
                Some(target) => table.by_path(&endpoints, target).map_or_else(Vec::new, |one| vec![one]),
                None => endpoints,
            };
            let role = table.role_of(&endpoints).unwrap_or_else(|| cx.unnamed_role(s.pid, Some(host)));
            Some((i, role, endpoints))
        })
        .collect();
    let decided: Vec<(Vec<usize>, Roles)> = build.peers.iter().map(|peer| (peer.spans.clone(), peer_roles(&cx, peer))).collect();
    for (i, role, endpoints) in requests {
        let s = &mut build.spans[i];
        s.role = role;
        label_attrs(table, &endpoints, "entry", &mut s.attrs);
        s.endpoints = endpoints;
    }
    for (spans, roles) in decided {
        for span in spans {
            let s = &mut build.spans[span];
            // TLS inside a tunnel is the target's handshake.
            let (role, endpoints) = match (&roles.target, s.kind) {
                (Some((role, endpoints)), SpanKind::Tls) => (*role, endpoints.clone()),
                _ => (roles.role, roles.endpoints.clone()),
            };
            s.role = role;
            // A plaintext request names its entry among several on one host by path.
            let by_path = (s.kind == SpanKind::Http && endpoints.len() > 1)
                .then(|| s.attrs.get("target").and_then(Value::as_str).and_then(|t| table.by_path(&endpoints, t)))
                .flatten();
            let endpoints = by_path.map_or(endpoints, |one| vec![one]);
            label_attrs(table, &endpoints, "entry", &mut s.attrs);
            s.endpoints = endpoints;
            if let Some((target_role, target_endpoints)) = &roles.target
                && s.kind != SpanKind::Tls
            {
                s.target_role = Some(*target_role);
                s.target_endpoints = target_endpoints.clone();
                s.attrs.insert("target_role".into(), serde_json::to_value(target_role).unwrap_or(Value::Null));
                label_attrs(table, target_endpoints, "target_entry", &mut s.attrs);
            }
        }
    }
}

/// An unanswered query ends where Go gave up on it: when it asked the same
/// question again (its next try, or the next nameserver), which comes sooner
/// than 5 s under resolv.conf's `options timeout:N`. Go waits at least 1 s for
/// an answer (it raises a smaller timeout to 1), so a retry sooner than that
/// means the try failed at once: the server was refused (an ICMP port
/// unreachable, which the build's read saw and these spans cannot), not slow.
fn settle_unanswered_dns(build: &mut BuildState) {
    let queries: Vec<(usize, u64, Option<String>, Option<String>)> = build
        .spans
        .iter()
        .enumerate()
        .filter(|(_, s)| s.kind == SpanKind::Dns)
        .map(|(i, s)| (i, s.start_ns, s.host.clone(), s.attrs.get("qtype").and_then(Value::as_str).map(str::to_string)))
        .collect();
    for &(index, start, ref host, ref qtype) in &queries {
        let s = &build.spans[index];
        if s.attrs.get("answered") != Some(&Value::Bool(false)) {
            continue;
        }
        let retry = queries
            .iter()
            .filter(|(i, t, h, q)| *i != index && *t > start && h == host && q == qtype)
            .map(|(_, t, _, _)| *t)
            .min();
        if let Some(retry) = retry.filter(|&t| s.end_ns.is_none_or(|end| t < end)) {
            let s = &mut build.spans[index];
            s.end_ns = Some(retry);
            s.outcome = Some(if retry - start < MIN_DNS_TIMEOUT_NS { Outcome::Refused } else { Outcome::Timeout });
        }
    }
}

/// Notes on queries that gave no address for a name that resolved all the same
/// (a refused or empty AAAA beside a good A, a search-list miss).
fn note_dns(build: &mut BuildState, names: &[lookups::NameLookups]) {
    for group in names {
        if !group.resolved() {
            continue;
        }
        for &query in &group.queries {
            if lookups::unanswered(&build.spans[query]).is_some() {
                build.spans[query].attrs.insert("name_resolved".into(), true.into());
            }
        }
    }
}

/// Renders a build: `anchor` ties the kernel's clock to wall time.
pub fn render(mut build: BuildState, anchor: (u64, i64), settings: &Settings) -> Build {
    let table = EndpointTable::from_config(&build.config);
    assign_roles(&mut build, &table);
    build.finish_modules();
    let end = build.end_ns();
    for span in &mut build.spans {
        if span.is_open() {
            // Still open when the stream ended: say so rather than guess.
            span.end(end, None);
            span.attrs.insert("unfinished".into(), true.into());
            if span.outcome.is_none() {
                span.outcome = Some(Outcome::Aborted);
            }
        }
    }
    settle_unanswered_dns(&mut build);
    let names = lookups::by_name(&build.spans, &table.host_names());
    note_dns(&mut build, &names);
    let wall = |ns: u64| timeline::rfc3339(i128::from(anchor.1) + i128::from(ns) - i128::from(anchor.0));
    let complete = build.lost == 0 && !build.started_late && !build.end_unseen && !build.dropped.any();
    if build.environment_truncated {
        tracing::warn!("build {}: environment larger than the kernel copies; its Go settings may be incomplete", build.root);
    }
    let findings = findings::findings(&build, &table, &names, complete, settings);
    let spans = build
        .spans
        .iter()
        .enumerate()
        .map(|(index, s)| Span {
            id: index as u32 + 1,
            parent: s.parent.map(|p| p as u32 + 1),
            kind: s.kind,
            start: wall(s.start_ns),
            end: s.end_ns.map(wall),
            duration_ms: s.end_ns.map(|_| timeline::millis(s.duration_ns())),
            pid: s.pid,
            role: s.role,
            host: s.host.clone(),
            addr: s.addr.map(|a| a.to_string()),
            port: s.port,
            outcome: s.outcome,
            attrs: s.attrs.clone(),
        })
        .collect();
    Build {
        id: format!("{}-{}", build.root, build.start_ns),
        command: build.command,
        pid: build.root,
        started_at: wall(build.start_ns),
        ended_at: build.ended_ns.map(wall),
        exit_code: build.exit_code,
        complete,
        state: None,
        config: build.config,
        notes: build.notes,
        spans,
        findings,
    }
}
