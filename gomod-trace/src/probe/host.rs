//! What the programs need to know about this host before they load: where cgroup v2
//! is mounted, tracepoint field offsets and enum names from tracefs format files,
//! and the few kernel struct offsets from BTF. Nothing here is hard-coded per
//! kernel version; whatever is missing is a clear error naming what to fix.
use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use gomod_trace_ebpf::{KernelOffsets, TracepointOffsets};

pub const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";
const TRACEFS_CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(
        "BTF not found at {BTF_PATH}: this kernel was built without CONFIG_DEBUG_INFO_BTF; gomod-trace needs a kernel with BTF (most distribution kernels since 5.4 have it)"
    )]
    NoBtf,
    #[error("cannot read kernel BTF at {BTF_PATH}: {0}")]
    Btf(String),
    #[error("kernel BTF has no field {0}: this kernel's layout is not supported yet")]
    BtfField(String),
    #[error(
        "no cgroup v2 hierarchy is mounted and mounting one at {path} failed ({source}); mount one (mount -t cgroup2 none /sys/fs/cgroup) or run on a host with cgroup v2"
    )]
    NoCgroup2 { path: String, source: nix::Error },
    #[error(
        "tracefs is not mounted and mounting it at /sys/kernel/tracing failed ({0}); run as root, or mount it: mount -t tracefs nodev /sys/kernel/tracing"
    )]
    NoTracefs(nix::Error),
    #[error("tracepoint {0} is not available on this kernel ({1})")]
    Tracepoint(String, String),
    #[error("tracepoint {tracepoint} has no field {field} on this kernel")]
    TracepointField { tracepoint: String, field: String },
}

/// One tracepoint's format file, parsed: field name → byte offset.
#[derive(Debug, Default, Clone)]
pub struct TracepointFormat {
    pub fields: BTreeMap<String, u32>,
}

impl TracepointFormat {
    /// Parses the `field:TYPE NAME; offset:N; size:N; signed:N;` lines of a format file.
    pub fn parse(text: &str) -> TracepointFormat {
        let mut fields = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.trim().strip_prefix("field:") else { continue };
            let mut parts = rest.split(';').map(str::trim);
            let Some(declaration) = parts.next() else { continue };
            let Some(offset) = parts.find_map(|p| p.strip_prefix("offset:")) else { continue };
            let Ok(offset) = offset.parse() else { continue };
            // The name is the declaration's last word, without an array suffix.
            let Some(name) = declaration.split_whitespace().last() else { continue };
            let name = name.split('[').next().unwrap_or(name);
            fields.insert(name.to_string(), offset);
        }
        TracepointFormat { fields }
    }

    fn offset(&self, tracepoint: &str, field: &str) -> Result<u32, HostError> {
        self.fields.get(field).copied().ok_or_else(|| HostError::TracepointField {
            tracepoint: tracepoint.to_string(),
            field: field.to_string(),
        })
    }
}

/// Names of the `skb_drop_reason` values, from the `print fmt` of `skb:kfree_skb`
/// (`__print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, ...)`).
pub fn parse_drop_reasons(text: &str) -> BTreeMap<u32, String> {
    let mut reasons = BTreeMap::new();
    let Some(start) = text.find("__print_symbolic(REC->reason") else { return reasons };
    let mut rest = &text[start..];
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find('}') else { break };
        let entry = &rest[..close];
        rest = &rest[close + 1..];
        let mut parts = entry.splitn(2, ',');
        let (Some(value), Some(name)) = (parts.next(), parts.next()) else { continue };
        let value = value.trim();
        let value = match value.strip_prefix("0x") {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => value.parse().ok(),
        };
        if let Some(value) = value {
            reasons.insert(value, name.trim().trim_matches('"').to_string());
        }
    }
    reasons
}

/// The tracefs directory, mounting tracefs if no mount is there yet.
pub fn tracefs() -> Result<PathBuf, HostError> {
    for candidate in TRACEFS_CANDIDATES {
        if Path::new(candidate).join("events").is_dir() {
            return Ok(PathBuf::from(candidate));
        }
    }
    let target = TRACEFS_CANDIDATES[0];
    nix::mount::mount(
        Some("nodev"),
        target,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(HostError::NoTracefs)?;
    Ok(PathBuf::from(target))
}

pub fn read_format(tracefs: &Path, group: &str, name: &str) -> Result<String, HostError> {
    let path = tracefs.join("events").join(group).join(name).join("format");
    fs::read_to_string(&path)
        .map_err(|e| HostError::Tracepoint(format!("{group}:{name}"), e.to_string()))
}

/// Where the cgroup v2 hierarchy is mounted, from a /proc/self/mounts text.
pub fn find_cgroup2(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_source, target, fstype) = (fields.next()?, fields.next()?, fields.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(target.replace("\\040", " ")))
    })
}

/// The cgroup v2 root: the mount listed in /proc/self/mounts, else a private mount
/// (inside `ip netns exec`, /sys is remounted and the host's cgroup mounts are gone).
pub fn cgroup2_root() -> Result<PathBuf, HostError> {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if let Some(path) = find_cgroup2(&mounts) {
        return Ok(path);
    }
    let path = PathBuf::from("/run/gomod-trace/cgroup2");
    let _ = fs::create_dir_all(&path);
    nix::mount::mount(
        Some("none"),
        &path,
        Some("cgroup2"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|source| HostError::NoCgroup2 { path: path.display().to_string(), source })?;
    Ok(path)
}

/// Byte offset of `path` (member names, descending through anonymous members as C
/// does) inside struct `root` in kernel BTF.
fn member_offset(btf: &btf_rs::Btf, root: &str, path: &[&str]) -> Result<u32, HostError> {
    let missing = || HostError::BtfField(format!("{root}.{}", path.join(".")));
    let mut current = btf
        .resolve_types_by_name(root)
        .map_err(|_| missing())?
        .into_iter()
        .find(|t| matches!(t, btf_rs::Type::Struct(_)))
        .ok_or_else(missing)?;
    let mut bits = 0u32;
    for name in path {
        let (offset, next) = find_member(btf, &current, name).ok_or_else(missing)?;
        bits += offset;
        current = next;
    }
    Ok(bits / 8)
}

/// Finds member `name` in a struct or union, looking inside anonymous members.
/// Returns its bit offset and its type (typedefs and qualifiers resolved).
fn find_member(btf: &btf_rs::Btf, ty: &btf_rs::Type, name: &str) -> Option<(u32, btf_rs::Type)> {
    let members = match ty {
        btf_rs::Type::Struct(s) | btf_rs::Type::Union(s) => &s.members,
        _ => return None,
    };
    for member in members {
        let member_name = btf.resolve_name(member).unwrap_or_default();
        let member_type = resolve_typedefs(btf, btf.resolve_chained_type(member).ok()?)?;
        if member_name == name {
            return Some((member.bit_offset(), member_type));
        }
        if member_name.is_empty()
            && let Some((offset, found)) = find_member(btf, &member_type, name)
        {
            return Some((member.bit_offset() + offset, found));
        }
    }
    None
}

fn resolve_typedefs(btf: &btf_rs::Btf, mut ty: btf_rs::Type) -> Option<btf_rs::Type> {
    loop {
        ty = match &ty {
            btf_rs::Type::Typedef(t) => btf.resolve_chained_type(t).ok()?,
            btf_rs::Type::Const(t) | btf_rs::Type::Volatile(t) => btf.resolve_chained_type(t).ok()?,
            _ => return Some(ty),
        };
    }
}

pub fn kernel_offsets() -> Result<KernelOffsets, HostError> {
    if !Path::new(BTF_PATH).exists() {
        return Err(HostError::NoBtf);
    }
    let btf = btf_rs::Btf::from_file(BTF_PATH).map_err(|e| HostError::Btf(e.to_string()))?;
    Ok(KernelOffsets {
        task_exit_code: member_offset(&btf, "task_struct", &["exit_code"])?,
        task_mm: member_offset(&btf, "task_struct", &["mm"])?,
        mm_arg_start: member_offset(&btf, "mm_struct", &["arg_start"])?,
        mm_arg_end: member_offset(&btf, "mm_struct", &["arg_end"])?,
        mm_env_start: member_offset(&btf, "mm_struct", &["env_start"])?,
        mm_env_end: member_offset(&btf, "mm_struct", &["env_end"])?,
        sock_cookie: member_offset(&btf, "sock", &["__sk_common", "skc_cookie"])?,
        sock_err: member_offset(&btf, "sock", &["sk_err"])?,
        skb_sk: member_offset(&btf, "sk_buff", &["sk"])?,
        _pad: 0,
    })
}

/// Tracepoint facts: field offsets for the programs, drop reason names for decode.
pub struct TracepointFacts {
    pub offsets: TracepointOffsets,
    pub kfree_has_rx_sk: bool,
    pub drop_reasons: BTreeMap<u32, String>,
}

pub fn tracepoint_facts(tracefs: &Path) -> Result<TracepointFacts, HostError> {
    let format = |group: &str, name: &str| -> Result<(String, TracepointFormat, String), HostError> {
        let text = read_format(tracefs, group, name)?;
        Ok((format!("{group}:{name}"), TracepointFormat::parse(&text), text))
    };
    let (fork_name, fork, _) = format("sched", "sched_process_fork")?;
    let (exec_name, exec, _) = format("sched", "sched_process_exec")?;
    let (state_name, state, _) = format("sock", "inet_sock_set_state")?;
    let (retransmit_name, retransmit, _) = format("tcp", "tcp_retransmit_skb")?;
    let (reset_name, reset, _) = format("tcp", "tcp_receive_reset")?;
    let (kfree_name, kfree, kfree_text) = format("skb", "kfree_skb")?;
    let (openat_name, openat, _) = format("syscalls", "sys_enter_openat")?;
    let (renameat_name, renameat, _) = format("syscalls", "sys_enter_renameat")?;
    let (renameat2_name, renameat2, _) = format("syscalls", "sys_enter_renameat2")?;
    let (unlinkat_name, unlinkat, _) = format("syscalls", "sys_enter_unlinkat")?;
    let (connect_name, connect, _) = format("syscalls", "sys_enter_connect")?;
    let (connect_exit_name, connect_exit, _) = format("syscalls", "sys_exit_connect")?;
    let (getsockopt_name, getsockopt, _) = format("syscalls", "sys_enter_getsockopt")?;
    let (getsockopt_exit_name, getsockopt_exit, _) = format("syscalls", "sys_exit_getsockopt")?;
    // The exit tracepoint is attached too; its fields are not read.
    format("sched", "sched_process_exit")?;
    let s = |field| state.offset(&state_name, field);
    let offsets = TracepointOffsets {
        exec_filename: exec.offset(&exec_name, "filename")?,
        fork_child_pid: fork.offset(&fork_name, "child_pid")?,
        state_skaddr: s("skaddr")?,
        state_oldstate: s("oldstate")?,
        state_newstate: s("newstate")?,
        state_sport: s("sport")?,
        state_dport: s("dport")?,
        state_family: s("family")?,
        state_protocol: s("protocol")?,
        state_saddr: s("saddr")?,
        state_daddr: s("daddr")?,
        state_saddr_v6: s("saddr_v6")?,
        state_daddr_v6: s("daddr_v6")?,
        retransmit_skaddr: retransmit.offset(&retransmit_name, "skaddr")?,
        retransmit_state: retransmit.offset(&retransmit_name, "state")?,
        reset_skaddr: reset.offset(&reset_name, "skaddr")?,
        kfree_skbaddr: kfree.offset(&kfree_name, "skbaddr")?,
        kfree_rx_sk: kfree.fields.get("rx_sk").copied().unwrap_or(0),
        kfree_reason: kfree.offset(&kfree_name, "reason")?,
        openat_filename: openat.offset(&openat_name, "filename")?,
        openat_flags: openat.offset(&openat_name, "flags")?,
        renameat_oldname: renameat.offset(&renameat_name, "oldname")?,
        renameat_newname: renameat.offset(&renameat_name, "newname")?,
        renameat2_oldname: renameat2.offset(&renameat2_name, "oldname")?,
        renameat2_newname: renameat2.offset(&renameat2_name, "newname")?,
        unlinkat_pathname: unlinkat.offset(&unlinkat_name, "pathname")?,
        connect_ret: connect_exit.offset(&connect_exit_name, "ret")?,
        getsockopt_level: getsockopt.offset(&getsockopt_name, "level")?,
        getsockopt_optname: getsockopt.offset(&getsockopt_name, "optname")?,
        getsockopt_optval: getsockopt.offset(&getsockopt_name, "optval")?,
        getsockopt_ret: getsockopt_exit.offset(&getsockopt_exit_name, "ret")?,
        connect_fd: connect.offset(&connect_name, "fd")?,
        connect_addr: connect.offset(&connect_name, "uservaddr")?,
        getsockopt_fd: getsockopt.offset(&getsockopt_name, "fd")?,
    };
    Ok(TracepointFacts {
        offsets,
        kfree_has_rx_sk: kfree.fields.contains_key("rx_sk"),
        drop_reasons: parse_drop_reasons(&kfree_text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KFREE: &str = "name: kfree_skb
ID: 1559
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:void * rx_sk;\toffset:24;\tsize:8;\tsigned:0;
\tfield:__u8 saddr[4];\toffset:34;\tsize:4;\tsigned:0;
\tfield:enum skb_drop_reason reason;\toffset:36;\tsize:4;\tsigned:0;

print fmt: \"skbaddr=%p reason=%s\", REC->skbaddr, __print_symbolic(REC->reason, { 2, \"NOT_SPECIFIED\" }, { 3, \"NO_SOCKET\" }, { 0x10, \"NETFILTER_DROP\" })
";

    #[test]
    fn parses_field_offsets_including_arrays() {
        let f = TracepointFormat::parse(KFREE);
        assert_eq!(f.fields["skbaddr"], 8);
        assert_eq!(f.fields["rx_sk"], 24);
        assert_eq!(f.fields["saddr"], 34);
        assert_eq!(f.fields["reason"], 36);
        assert!(f.offset("skb:kfree_skb", "location").is_err());
    }

    #[test]
    fn parses_drop_reason_names() {
        let r = parse_drop_reasons(KFREE);
        assert_eq!(r[&2], "NOT_SPECIFIED");
        assert_eq!(r[&0x10], "NETFILTER_DROP");
        assert_eq!(r.len(), 3);
        assert!(parse_drop_reasons("print fmt: \"x\"").is_empty());
    }

    #[test]
    fn finds_cgroup2_in_mounts() {
        let mounts = "tmpfs /sys/fs/cgroup tmpfs rw 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
        assert_eq!(find_cgroup2(mounts), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(find_cgroup2("proc /proc proc rw 0 0\n"), None);
    }
}
