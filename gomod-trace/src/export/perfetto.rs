//! The perfetto export: a binary Perfetto trace (a `Trace` of `TracePacket`s with
//! track events, in Perfetto's own protos) to open at ui.perfetto.dev.
//!
//! Per build, a process track (`go mod download [build id]`) holds a slice for the
//! build and, under it, groups of tracks: `processes` (the process tree, a track per
//! process nested under its parent's), `dns` (a track per resolver), `connections` (a
//! track per `connect` span with its tls, transfer and http descendants) and
//! `modules` (a track per module). Every span is one slice (category: its kind) with
//! all it holds as debug annotations; every finding is an instant on the track of
//! its first span; a flow leads from each request's connection to the request.
//!
//! Perfetto wants the slices of a track strictly nested. Spans are not always: a
//! TLS handshake starts after the `connect` span (the TCP handshake) ended, HTTP/2
//! requests overlap. So each track is laid out in lanes: a slice goes to the first
//! lane where it nests, and a lane past the first is a child track
//! (`proxy.lab.test:443 (proxy) #5 (2)`). Times stay exactly the timeline's; a span
//! with no end ends at the build's end, annotated `unfinished: true`.
//!
//! Timestamps are ns since the Unix epoch, on Perfetto's default clock (a clock
//! snapshot says it equals the wall clock), so builds line up. One packet sequence,
//! no interned data; track descriptors come before any event.
use std::{
    cmp::Reverse,
    collections::{BTreeMap, HashMap, HashSet},
};

use perfetto_protos::{
    builtin_clock::BuiltinClock,
    clock_snapshot::{ClockSnapshot, clock_snapshot::Clock},
    debug_annotation::DebugAnnotation,
    process_descriptor::ProcessDescriptor,
    trace::Trace,
    trace_packet::{TracePacket, trace_packet::SequenceFlags},
    track_descriptor::{TrackDescriptor, track_descriptor::ChildTracksOrdering},
    track_event::{TrackEvent, track_event::Type},
};
use protobuf::{Enum, EnumOrUnknown, Message, MessageField};
use serde_json::Value;

use crate::timeline::{Build, Finding, Outcome, Span, SpanKind, Timeline, parse_rfc3339};

/// The one packet sequence of the trace.
const SEQUENCE: u32 = 1;

pub fn render(timeline: &Timeline) -> Vec<u8> {
    let mut trace = Trace::new();
    let origin = timeline.builds.iter().filter_map(|b| parse_rfc3339(&b.started_at)).min().map_or(0, clamp);
    let mut first = packet();
    first.set_clock_snapshot(clock_snapshot(origin));
    first.sequence_flags = Some(SequenceFlags::SEQ_INCREMENTAL_STATE_CLEARED.value() as u32);
    trace.packet.push(first);
    let mut writer = Writer::default();
    for (index, build) in timeline.builds.iter().enumerate() {
        writer.build(index, build);
    }
    trace.packet.extend(writer.descriptors);
    // Stable: the events of one track keep their order (an end before a begin at
    // the same time), and descriptors stay ahead of everything.
    writer.events.sort_by_key(|(ts, _)| *ts);
    trace.packet.extend(writer.events.into_iter().map(|(_, p)| p));
    trace.write_to_bytes().expect("a trace encodes")
}

/// Perfetto's clock (BOOTTIME, the default) is the wall clock here.
fn clock_snapshot(ts: u64) -> ClockSnapshot {
    let clock = |id: BuiltinClock| {
        let mut clock = Clock::new();
        clock.clock_id = Some(id.value() as u32);
        clock.timestamp = Some(ts);
        clock
    };
    let mut snapshot = ClockSnapshot::new();
    snapshot.clocks = vec![clock(BuiltinClock::BUILTIN_CLOCK_BOOTTIME), clock(BuiltinClock::BUILTIN_CLOCK_REALTIME)];
    snapshot.primary_trace_clock = Some(EnumOrUnknown::new(BuiltinClock::BUILTIN_CLOCK_BOOTTIME));
    snapshot
}

fn packet() -> TracePacket {
    let mut packet = TracePacket::new();
    packet.set_trusted_packet_sequence_id(SEQUENCE);
    packet
}

fn clamp(ns: i128) -> u64 {
    u64::try_from(ns.max(0)).unwrap_or(u64::MAX)
}

/// A build's times, ns since the Unix epoch.
struct Times {
    start: u64,
    end: u64,
}

impl Times {
    fn of(build: &Build) -> Times {
        // A build still running (or whose end was not seen) ends with what was seen.
        let (start, end) = build.seen_ns();
        Times { start: clamp(start), end: clamp(end) }
    }

    /// A span's start and end; one with no end ends with the build.
    fn span(&self, span: &Span) -> (u64, u64) {
        let start = parse_rfc3339(&span.start).map_or(self.start, clamp);
        let end = match &span.end {
            Some(end) => parse_rfc3339(end).map_or(start, clamp),
            None => self.end,
        };
        (start, end.max(start))
    }
}

/// What a track of a build holds: each is one track (and its lanes).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Group {
    /// The build's own track: the build slice, findings that name no span.
    Build,
    /// A process span, and spans under it that belong to no connection or module.
    Process(u32),
    /// DNS lookups sent to one resolver (`addr:port`).
    Resolver(String),
    Connection(u32),
    Module(u32),
    /// Spans under no process, connection or module.
    Other,
}

/// The containers under a build's process track, in the order they are listed.
const CATEGORIES: [&str; 5] = ["processes", "dns", "connections", "modules", "other"];

impl Group {
    /// Index into CATEGORIES (none for the build's own track).
    fn category(&self) -> Option<usize> {
        match self {
            Group::Build => None,
            Group::Process(_) => Some(0),
            Group::Resolver(_) => Some(1),
            Group::Connection(_) => Some(2),
            Group::Module(_) => Some(3),
            Group::Other => Some(4),
        }
    }
}

/// What to emit at a place on a track.
enum Mark {
    /// A slice: its begin event (the end event is derived).
    Slice(TrackEvent),
    /// An instant, in the lane of the slice it is about (an item of its track).
    Instant(TrackEvent, usize),
}

/// A slice or instant placed on a group's track, before lanes are known.
struct Item {
    start: u64,
    end: u64,
    /// A parent before its child when both have the same times.
    depth: usize,
    /// Keeps the timeline's order among equals.
    order: usize,
    mark: Mark,
}

impl Item {
    fn key(&self) -> (u64, Reverse<u64>, usize, bool, usize) {
        (self.start, Reverse(self.end), self.depth, matches!(self.mark, Mark::Instant(..)), self.order)
    }
}

/// Lays a track's items out in lanes where each lane's slices strictly nest: a
/// slice goes to the first lane where, once what ended by its start is closed, it
/// lies within the innermost open slice. An instant goes to the lane of its slice.
fn lanes(items: &[Item]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| items[i].key());
    let mut open: Vec<Vec<u64>> = Vec::new();
    let mut lane_of = vec![0; items.len()];
    for i in order.into_iter().filter(|&i| matches!(items[i].mark, Mark::Slice(_))) {
        let Item { start, end, .. } = items[i];
        let lane = (0..open.len())
            .find(|&lane| {
                let stack = &mut open[lane];
                while stack.last().is_some_and(|&e| e <= start) {
                    stack.pop();
                }
                stack.last().is_none_or(|&e| end <= e)
            })
            .unwrap_or_else(|| {
                open.push(Vec::new());
                open.len() - 1
            });
        open[lane].push(end);
        lane_of[i] = lane;
    }
    for (i, item) in items.iter().enumerate() {
        if let Mark::Instant(_, on) = item.mark {
            lane_of[i] = lane_of[on];
        }
    }
    lane_of
}

/// Track uuids: unique by construction, and stable (from the build's index, what
/// the track is and the lane) wherever the numbers fit their bits.
#[derive(Default)]
struct Uuids {
    used: HashSet<u64>,
    spare: u64,
}

const SPARE_BUILD: u64 = 0xFFFF;

impl Uuids {
    fn get(&mut self, build: usize, (tag, key): (u64, u64), lane: usize) -> u64 {
        let packed = (build < (SPARE_BUILD - 1) as usize && key <= u64::from(u32::MAX) && lane < 0x1000)
            .then(|| ((build as u64 + 1) << 48) | (tag << 44) | (key << 12) | lane as u64);
        if let Some(uuid) = packed
            && self.used.insert(uuid)
        {
            return uuid;
        }
        loop {
            self.spare += 1;
            let uuid = (SPARE_BUILD << 48) | self.spare;
            if self.used.insert(uuid) {
                return uuid;
            }
        }
    }
}

#[derive(Default)]
struct Writer {
    uuids: Uuids,
    descriptors: Vec<TracePacket>,
    events: Vec<(u64, TracePacket)>,
}

/// A group's track while a build is laid out.
struct Track {
    name: String,
    /// Where the group is listed in its category: by start, then span id.
    rank: (u64, u32),
    /// The track above it: a process's parent process (else its category).
    parent: Option<Group>,
    items: Vec<Item>,
}

impl Writer {
    fn descriptor(&mut self, descriptor: TrackDescriptor) {
        let mut p = packet();
        p.set_track_descriptor(descriptor);
        self.descriptors.push(p);
    }

    fn build(&mut self, index: usize, build: &Build) {
        let times = Times::of(build);
        let by_id: HashMap<u32, &Span> = build.spans.iter().map(|s| (s.id, s)).collect();
        let ancestors = |span: &Span| {
            // Bounded: a parent cycle in a damaged timeline cannot loop forever.
            std::iter::successors(span.parent.and_then(|p| by_id.get(&p).copied()), |s| {
                s.parent.and_then(|p| by_id.get(&p).copied())
            })
            .take(build.spans.len())
        };
        // The requests each connection carried.
        let mut requests: HashMap<u32, Vec<u32>> = HashMap::new();
        for span in build.spans.iter().filter(|s| s.kind == SpanKind::Http) {
            if let Some(connection) = connection_of(ancestors(span)) {
                requests.entry(connection).or_default().push(span.id);
            }
        }

        // Each group's track and what it holds.
        let mut tracks: BTreeMap<Group, Track> = BTreeMap::new();
        let build_slice =
            Item { start: times.start, end: times.end, depth: 0, order: 0, mark: Mark::Slice(build_event(build)) };
        tracks.insert(
            Group::Build,
            Track { name: String::new(), rank: (times.start, 0), parent: None, items: vec![build_slice] },
        );
        let mut placed: HashMap<u32, (Group, usize)> = HashMap::new();
        for (order, span) in build.spans.iter().enumerate() {
            let group = group_of(span, ancestors(span));
            let (start, end) = times.span(span);
            let track = tracks.entry(group.clone()).or_insert_with(|| Track {
                name: track_name(span, &group),
                rank: (start, span.id),
                parent: match group {
                    Group::Process(_) => parent_process(span, &by_id).map(Group::Process),
                    _ => None,
                },
                items: Vec::new(),
            });
            track.rank = track.rank.min((start, span.id));
            let mut event = span_event(span);
            // A flow per request, linking the two slices (Perfetto orders them by
            // time: a request may start before its connection, which it dialled).
            if let Some(ids) = requests.get(&span.id).filter(|_| span.kind == SpanKind::Connect) {
                event.flow_ids = ids.iter().map(|&id| flow_id(index, id)).collect();
            }
            if span.kind == SpanKind::Http && connection_of(ancestors(span)).is_some() {
                event.flow_ids = vec![flow_id(index, span.id)];
            }
            placed.insert(span.id, (group, track.items.len()));
            let depth = ancestors(span).count();
            track.items.push(Item { start, end, depth, order: order + 1, mark: Mark::Slice(event) });
        }
        // Findings: on the track of their first span, at its start; else on the
        // build's track, at its start.
        for (order, finding) in build.findings.iter().enumerate() {
            let (group, on) = finding.spans.first().and_then(|id| placed.get(id)).cloned().unwrap_or((Group::Build, 0));
            let track = tracks.get_mut(&group).expect("the finding's track exists");
            let at = track.items[on].start;
            let mark = Mark::Instant(finding_event(finding), on);
            track.items.push(Item { start: at, end: at, depth: 0, order: build.spans.len() + order + 1, mark });
        }

        // Descriptors: the build's process track, its categories, then the groups
        // (a process's track after its parent's), then their lanes.
        let process_uuid = self.uuids.get(index, (0, 0), 0);
        let mut process = ProcessDescriptor::new();
        process.pid = i32::try_from(build.pid).ok();
        process.process_name = Some(format!("{} [{}]", build.command.join(" "), build.id));
        process.cmdline = build.command.clone();
        process.start_timestamp_ns = i64::try_from(times.start).ok();
        let mut descriptor = TrackDescriptor::new();
        descriptor.uuid = Some(process_uuid);
        descriptor.process = MessageField::some(process);
        self.descriptor(descriptor);
        let mut category_uuid = [None; CATEGORIES.len()];
        for category in tracks.keys().filter_map(Group::category) {
            if category_uuid[category].is_none() {
                let uuid = self.uuids.get(index, (1, category as u64), 0);
                self.descriptor(plain_track(uuid, process_uuid, CATEGORIES[category], None, true));
                category_uuid[category] = Some(uuid);
            }
        }
        let mut ranked: Vec<Group> = tracks.keys().filter(|g| **g != Group::Build).cloned().collect();
        ranked.sort_by_key(|g| (g.category(), tracks[g].rank));
        let rank: HashMap<&Group, i32> =
            ranked.iter().enumerate().map(|(i, g)| (g, i32::try_from(i).unwrap_or(i32::MAX))).collect();
        let mut ids: HashMap<Group, ((u64, u64), u64)> = HashMap::new();
        ids.insert(Group::Build, ((0, 0), process_uuid));
        for group in &ranked {
            // Undescribed ancestors first, the outermost first; a cycle stops it.
            let mut chain = vec![group];
            while let Some(parent) = tracks[*chain.last().expect("not empty")].parent.as_ref()
                && tracks.contains_key(parent)
                && !ids.contains_key(parent)
                && !chain.contains(&parent)
            {
                chain.push(parent);
            }
            for group in chain.into_iter().rev() {
                if ids.contains_key(group) {
                    continue;
                }
                let tag_key = match group {
                    Group::Build => (0, 0),
                    Group::Process(id) => (2, u64::from(*id)),
                    Group::Resolver(_) => (3, rank[group] as u64),
                    Group::Connection(id) => (4, u64::from(*id)),
                    Group::Module(id) => (5, u64::from(*id)),
                    Group::Other => (6, 0),
                };
                let uuid = self.uuids.get(index, tag_key, 0);
                let track = &tracks[group];
                // A child process is listed after its parent's own lanes.
                let (parent, order) = match track.parent.as_ref().and_then(|p| ids.get(p)) {
                    Some((_, parent)) => (*parent, 1_000_000 + rank[group]),
                    None => {
                        let category = group.category().expect("groups but the build's have one");
                        (category_uuid[category].expect("the category is described"), rank[group])
                    }
                };
                let is_process = matches!(group, Group::Process(_));
                self.descriptor(plain_track(uuid, parent, &track.name, Some(order), is_process));
                ids.insert(group.clone(), (tag_key, uuid));
            }
        }

        // Lanes, then events.
        for (group, track) in tracks {
            let (tag_key, primary) = ids[&group];
            let lane_of = lanes(&track.items);
            let count = lane_of.iter().copied().max().map_or(1, |m| m + 1);
            let mut lane_uuids = vec![primary];
            for lane in 1..count {
                let uuid = self.uuids.get(index, tag_key, lane);
                let name = format!("{} ({})", track.name, lane + 1);
                let rank = i32::try_from(lane).unwrap_or(i32::MAX);
                self.descriptor(plain_track(uuid, primary, &name, Some(rank), false));
                lane_uuids.push(uuid);
            }
            let mut by_lane: Vec<Vec<Item>> = (0..count).map(|_| Vec::new()).collect();
            for (item, lane) in track.items.into_iter().zip(lane_of) {
                by_lane[lane].push(item);
            }
            for (items, uuid) in by_lane.into_iter().zip(lane_uuids) {
                self.emit_lane(uuid, items);
            }
        }
    }

    /// Emits a lane's events in time order; its slices nest by construction.
    fn emit_lane(&mut self, uuid: u64, mut items: Vec<Item>) {
        items.sort_by_key(Item::key);
        let mut open: Vec<u64> = Vec::new();
        let end_before = |open: &mut Vec<u64>, events: &mut Vec<(u64, TracePacket)>, ts: Option<u64>| {
            while let Some(&end) = open.last()
                && ts.is_none_or(|ts| end <= ts)
            {
                open.pop();
                let mut event = TrackEvent::new();
                event.set_type(Type::TYPE_SLICE_END);
                event.track_uuid = Some(uuid);
                let mut p = packet();
                p.timestamp = Some(end);
                p.set_track_event(event);
                events.push((end, p));
            }
        };
        for item in items {
            end_before(&mut open, &mut self.events, Some(item.start));
            let mut event = match item.mark {
                Mark::Slice(mut event) => {
                    debug_assert!(open.last().is_none_or(|&e| item.end <= e), "a slice nests in its lane");
                    open.push(item.end);
                    event.set_type(Type::TYPE_SLICE_BEGIN);
                    event
                }
                Mark::Instant(mut event, _) => {
                    event.set_type(Type::TYPE_INSTANT);
                    event
                }
            };
            event.track_uuid = Some(uuid);
            let mut p = packet();
            p.timestamp = Some(item.start);
            p.set_track_event(event);
            self.events.push((item.start, p));
        }
        end_before(&mut open, &mut self.events, None);
    }
}

fn plain_track(uuid: u64, parent: u64, name: &str, rank: Option<i32>, ordered_children: bool) -> TrackDescriptor {
    let mut descriptor = TrackDescriptor::new();
    descriptor.uuid = Some(uuid);
    descriptor.parent_uuid = Some(parent);
    descriptor.set_name(name.to_string());
    descriptor.sibling_order_rank = rank;
    if ordered_children {
        descriptor.child_ordering = Some(EnumOrUnknown::new(ChildTracksOrdering::EXPLICIT));
    }
    descriptor
}

fn group_of<'a>(span: &Span, mut ancestors: impl Iterator<Item = &'a Span>) -> Group {
    match span.kind {
        SpanKind::Process => Group::Process(span.id),
        SpanKind::Dns => Group::Resolver(resolver(span)),
        SpanKind::Connect => Group::Connection(span.id),
        SpanKind::Module => Group::Module(span.id),
        SpanKind::Tls | SpanKind::Http | SpanKind::Transfer => ancestors
            .find_map(|a| match a.kind {
                SpanKind::Connect => Some(Group::Connection(a.id)),
                SpanKind::Module => Some(Group::Module(a.id)),
                SpanKind::Process => Some(Group::Process(a.id)),
                SpanKind::Dns => Some(Group::Resolver(resolver(a))),
                SpanKind::Tls | SpanKind::Http | SpanKind::Transfer => None,
            })
            .unwrap_or(Group::Other),
    }
}

/// The connection that carried a request: its nearest `connect` ancestor.
fn connection_of<'a>(mut ancestors: impl Iterator<Item = &'a Span>) -> Option<u32> {
    ancestors.find(|a| a.kind == SpanKind::Connect).map(|a| a.id)
}

fn parent_process(span: &Span, by_id: &HashMap<u32, &Span>) -> Option<u32> {
    span.parent.and_then(|p| by_id.get(&p)).filter(|p| p.kind == SpanKind::Process).map(|p| p.id)
}

fn flow_id(build: usize, span: u32) -> u64 {
    ((build as u64 + 1) << 32) | u64::from(span)
}

fn resolver(span: &Span) -> String {
    match &span.addr {
        Some(addr) => endpoint(addr, span.port),
        None => "(unknown)".to_string(),
    }
}

/// `10.0.0.5:443`, `[fd00::1]:443`.
fn endpoint(addr: &str, port: Option<u16>) -> String {
    let addr = if addr.contains(':') { format!("[{addr}]") } else { addr.to_string() };
    match port {
        Some(port) => format!("{addr}:{port}"),
        None => addr,
    }
}

fn attr_str<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    span.attrs.get(key).and_then(Value::as_str)
}

/// `go mod download`: the argv, else the command name.
fn command(span: &Span) -> String {
    let argv: Vec<&str> = match span.attrs.get("argv") {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !argv.is_empty() {
        return argv.join(" ");
    }
    attr_str(span, "comm").unwrap_or("process").to_string()
}

fn track_name(span: &Span, group: &Group) -> String {
    match group {
        Group::Build => String::new(),
        Group::Process(_) => format!("{} [pid {}]", command(span), span.pid),
        Group::Resolver(resolver) => format!("resolver {resolver}"),
        Group::Connection(_) => {
            let place = span.host.as_deref().or(span.addr.as_deref()).unwrap_or("?");
            let place = match span.port {
                Some(port) => format!("{place}:{port}"),
                None => place.to_string(),
            };
            format!("{place} ({}) #{}", span.role.as_str(), span.id)
        }
        Group::Module(_) => match attr_str(span, "module") {
            Some(module) => format!("module {module}{}", version(span)),
            None => format!("module #{}", span.id),
        },
        Group::Other => "other spans".to_string(),
    }
}

fn version(span: &Span) -> String {
    attr_str(span, "version").map(|v| format!("@{v}")).unwrap_or_default()
}

/// A slice's name: what it is, then how it ended when that is not plain success
/// (`GET /lab.test/mod01/@v/list → 200`, `connect 10.0.0.5:443 → dropped`).
fn slice_name(span: &Span) -> String {
    let outcome = || match span.outcome {
        Some(outcome) if outcome != Outcome::Ok => format!(" → {}", outcome.as_str()),
        _ => String::new(),
    };
    let place = || span.host.as_deref().or(span.addr.as_deref()).unwrap_or("?").to_string();
    match span.kind {
        SpanKind::Process => {
            let exit = match span.attrs.get("exit_code").and_then(Value::as_i64) {
                Some(code) if code != 0 => format!(" → exit {code}"),
                _ => String::new(),
            };
            format!("{}{exit}", command(span))
        }
        SpanKind::Dns => {
            let qtype = attr_str(span, "qtype").map(|q| format!(" {q}")).unwrap_or_default();
            format!("dns{qtype} {}{}", place(), outcome())
        }
        SpanKind::Connect => {
            let to = match &span.addr {
                Some(addr) => endpoint(addr, span.port),
                None => endpoint(&place(), span.port),
            };
            format!("connect {to}{}", outcome())
        }
        SpanKind::Tls => {
            let sni = attr_str(span, "sni").map(|s| format!(" sni={s}")).unwrap_or_default();
            format!("tls{sni}{}", outcome())
        }
        SpanKind::Http => {
            let method = attr_str(span, "method").unwrap_or("HTTP");
            let target = attr_str(span, "target").or_else(|| attr_str(span, "url")).map_or_else(place, str::to_string);
            let result = match span.attrs.get("status").and_then(Value::as_i64) {
                Some(status) => format!(" → {status}"),
                None => outcome(),
            };
            format!("{method} {target}{result}")
        }
        SpanKind::Transfer => {
            let count = |key, arrow| {
                span.attrs.get(key).and_then(Value::as_u64).map(|n| format!(" {arrow}{n} B")).unwrap_or_default()
            };
            format!("transfer{}{}{}", count("bytes_received", "↓"), count("bytes_sent", "↑"), outcome())
        }
        SpanKind::Module => {
            let module = attr_str(span, "module").unwrap_or("module");
            format!("{module}{}{}", version(span), outcome())
        }
    }
}

fn span_event(span: &Span) -> TrackEvent {
    let mut event = TrackEvent::new();
    event.set_name(slice_name(span));
    event.categories.push(span.kind.as_str().to_string());
    let mut args = vec![annotation("span_id", &span.id.into())];
    if let Some(parent) = span.parent {
        args.push(annotation("parent_id", &parent.into()));
    }
    args.push(annotation("pid", &span.pid.into()));
    args.push(annotation("role", &span.role.as_str().into()));
    for (name, value) in [("host", &span.host), ("addr", &span.addr)] {
        if let Some(value) = value {
            args.push(annotation(name, &value.as_str().into()));
        }
    }
    if let Some(port) = span.port {
        args.push(annotation("port", &port.into()));
    }
    if let Some(outcome) = span.outcome {
        args.push(annotation("outcome", &outcome.as_str().into()));
    }
    if let Some(ms) = span.duration_ms {
        args.push(annotation("duration_ms", &ms.into()));
    }
    if span.end.is_none() {
        args.push(annotation("unfinished", &true.into()));
    }
    if !span.attrs.is_empty() {
        args.push(annotation("attrs", &Value::Object(span.attrs.clone().into_iter().collect())));
    }
    event.debug_annotations = args;
    event
}

fn build_event(build: &Build) -> TrackEvent {
    let mut event = TrackEvent::new();
    let result = match (build.exit_code, build.ended_at.is_some()) {
        (Some(code), _) => format!(" → exit {code}"),
        (None, true) => String::new(),
        (None, false) => " (running)".to_string(),
    };
    event.set_name(format!("{}{result}", build.command.join(" ")));
    event.categories.push("build".to_string());
    let mut args = vec![
        annotation("build_id", &build.id.as_str().into()),
        annotation("pid", &build.pid.into()),
        annotation("command", &build.command.clone().into()),
    ];
    if let Some(code) = build.exit_code {
        args.push(annotation("exit_code", &code.into()));
    }
    args.push(annotation("complete", &build.complete.into()));
    if build.ended_at.is_none() {
        args.push(annotation("unfinished", &true.into()));
    }
    if let Ok(config) = serde_json::to_value(&build.config)
        && !build.config.is_empty()
    {
        args.push(annotation("config", &config));
    }
    if !build.notes.is_empty() {
        args.push(annotation("notes", &build.notes.clone().into()));
    }
    event.debug_annotations = args;
    event
}

fn finding_event(finding: &Finding) -> TrackEvent {
    let mut event = TrackEvent::new();
    event.set_name(finding.kind.clone());
    event.categories.push("finding".to_string());
    let severity = serde_json::to_value(finding.severity).unwrap_or(Value::Null);
    event.debug_annotations = vec![
        annotation("severity", &severity),
        annotation("message", &finding.message.as_str().into()),
        annotation("remedy", &finding.remedy.as_str().into()),
        annotation("cost_ms", &finding.cost_ms.into()),
        annotation("spans", &finding.spans.clone().into()),
    ];
    event
}

fn annotation(name: &str, value: &Value) -> DebugAnnotation {
    let mut annotation = value_annotation(value);
    annotation.set_name(name.to_string());
    annotation
}

/// A JSON value as a debug annotation: objects as dicts, arrays as arrays, null as
/// the string `null`.
fn value_annotation(value: &Value) -> DebugAnnotation {
    let mut out = DebugAnnotation::new();
    match value {
        Value::Null => out.set_string_value("null".to_string()),
        Value::Bool(b) => out.set_bool_value(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => out.set_int_value(i),
            (None, Some(u)) => out.set_uint_value(u),
            _ => out.set_double_value(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => out.set_string_value(s.clone()),
        Value::Array(items) => out.array_values = items.iter().map(value_annotation).collect(),
        Value::Object(entries) => out.dict_entries = entries.iter().map(|(k, v)| annotation(k, v)).collect(),
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use perfetto_protos::debug_annotation::debug_annotation::Value as Annotated;
    use serde_json::json;

    use super::*;
    use crate::timeline::{Role, Severity, rfc3339};

    const T0: i128 = 1_790_000_000_000_000_000;

    fn at(ms: f64) -> String {
        rfc3339(T0 + (ms * 1e6) as i128)
    }

    fn span(id: u32, parent: Option<u32>, kind: SpanKind, start: f64, end: Option<f64>) -> Span {
        Span {
            id,
            parent,
            kind,
            start: at(start),
            end: end.map(at),
            duration_ms: end.map(|e| e - start),
            pid: 100,
            role: Role::Proxy,
            host: Some("proxy.lab.test".into()),
            addr: Some("10.0.0.5".into()),
            port: Some(443),
            outcome: Some(Outcome::Ok),
            attrs: BTreeMap::new(),
        }
    }

    fn with(mut span: Span, attrs: serde_json::Value) -> Span {
        span.attrs = serde_json::from_value(attrs).unwrap();
        span
    }

    /// Two builds: a process tree, overlapping lookups, a connection whose HTTP/2
    /// requests overlap (one starting before the connect), a module, a span with
    /// no end, findings on a span and on none.
    fn timeline() -> Timeline {
        let mut dns = span(3, Some(1), SpanKind::Dns, 1.0, Some(3.0));
        dns.role = Role::Dns;
        dns.addr = Some("10.0.0.2".into());
        dns.port = Some(53);
        let mut aaaa = dns.clone();
        (aaaa.id, aaaa.start, aaaa.end) = (4, at(2.0), Some(at(4.0)));
        aaaa.attrs = serde_json::from_value(json!({"qtype": "AAAA", "answers": []})).unwrap();
        let mut failed = span(12, Some(1), SpanKind::Connect, 50.0, Some(80.0));
        failed.outcome = Some(Outcome::Dropped);
        let build = Build {
            id: "100-1".into(),
            command: vec!["go".into(), "mod".into(), "download".into()],
            pid: 100,
            started_at: at(0.0),
            ended_at: Some(at(100.0)),
            exit_code: Some(1),
            complete: true,
            state: None,
            config: [(
                "GOPROXY".to_string(),
                crate::timeline::ConfigValue { value: "https://proxy.lab.test".into(), source: "env".into() },
            )]
            .into(),
            notes: Vec::new(),
            spans: vec![
                with(span(1, None, SpanKind::Process, 0.0, Some(100.0)), json!({"argv": ["go", "mod", "download"]})),
                with(span(2, Some(1), SpanKind::Process, 0.5, Some(1.5)), json!({"argv": ["git", "ls-remote"]})),
                with(dns, json!({"qtype": "A", "answers": ["10.0.0.5"], "nested": {"a": [1, 2.5, true, null]}})),
                aaaa,
                span(5, Some(1), SpanKind::Connect, 5.0, Some(6.0)),
                with(span(6, Some(5), SpanKind::Transfer, 6.0, Some(40.0)), json!({"bytes_received": 10})),
                with(span(7, Some(5), SpanKind::Tls, 6.5, Some(8.0)), json!({"sni": "proxy.lab.test"})),
                with(span(8, Some(7), SpanKind::Http, 4.5, Some(20.0)), json!({"method": "GET", "target": "/a"})),
                with(span(9, Some(7), SpanKind::Http, 9.0, Some(30.0)), json!({"method": "GET", "target": "/b"})),
                with(span(10, Some(7), SpanKind::Http, 10.0, None), json!({"method": "GET", "target": "/c"})),
                with(span(11, Some(1), SpanKind::Module, 4.0, Some(101.0)), json!({"module": "m", "version": "v1"})),
                failed,
            ],
            findings: vec![
                Finding {
                    kind: "firewall_drop".into(),
                    severity: Severity::Error,
                    message: "dropped".into(),
                    remedy: "open it".into(),
                    cost_ms: 30.0,
                    spans: vec![12],
                },
                Finding {
                    kind: "incomplete_trace".into(),
                    severity: Severity::Warning,
                    message: "lost".into(),
                    remedy: "".into(),
                    cost_ms: 0.0,
                    spans: vec![],
                },
            ],
        };
        let mut second = build.clone();
        second.id = "100-2".into();
        second.ended_at = None;
        second.exit_code = None;
        Timeline { schema_version: 1, builds: vec![build, second] }
    }

    struct Slice {
        track: u64,
        name: String,
        category: String,
        start: u64,
        end: Option<u64>,
        args: BTreeMap<String, Value>,
        flows: Vec<u64>,
    }

    fn json_of(a: &DebugAnnotation) -> Value {
        if !a.dict_entries.is_empty() {
            return Value::Object(a.dict_entries.iter().map(|e| (e.name().to_string(), json_of(e))).collect());
        }
        if !a.array_values.is_empty() {
            return Value::Array(a.array_values.iter().map(json_of).collect());
        }
        match &a.value {
            Some(Annotated::BoolValue(b)) => json!(b),
            Some(Annotated::IntValue(i)) => json!(i),
            Some(Annotated::UintValue(u)) => json!(u),
            Some(Annotated::DoubleValue(d)) => json!(d),
            Some(Annotated::StringValue(s)) => json!(s),
            _ => json!([]),
        }
    }

    /// Decodes a trace, checking what Perfetto needs of it on the way: descriptors
    /// first and unique, one sequence, per track balanced and strictly nested.
    fn decode(bytes: &[u8]) -> (HashMap<u64, TrackDescriptor>, Vec<Slice>, Vec<Slice>) {
        let trace = Trace::parse_from_bytes(bytes).expect("the trace decodes");
        let mut tracks = HashMap::new();
        let mut open: HashMap<u64, Vec<usize>> = HashMap::new();
        let (mut slices, mut instants) = (Vec::<Slice>::new(), Vec::new());
        let mut last = 0;
        for (i, p) in trace.packet.iter().enumerate() {
            assert_eq!(p.trusted_packet_sequence_id(), SEQUENCE);
            assert_eq!(i == 0, p.sequence_flags() == 1, "state cleared on the first packet only");
            if p.has_track_descriptor() {
                let d = p.track_descriptor().clone();
                assert!(d.parent_uuid.is_none_or(|p| tracks.contains_key(&p)), "parent described first");
                assert!(tracks.insert(d.uuid(), d).is_none(), "uuids unique");
            }
            if p.has_track_event() {
                let e = p.track_event();
                let track = e.track_uuid();
                assert!(tracks.contains_key(&track), "{:?} before its track", e.name());
                assert!(p.timestamp() >= last, "events in time order");
                last = p.timestamp();
                let slice = || Slice {
                    track,
                    name: e.name().to_string(),
                    category: e.categories.join(","),
                    start: p.timestamp(),
                    end: None,
                    args: e.debug_annotations.iter().map(|a| (a.name().to_string(), json_of(a))).collect(),
                    flows: e.flow_ids.clone(),
                };
                match e.type_() {
                    Type::TYPE_SLICE_BEGIN => {
                        let stack = open.entry(track).or_default();
                        if let Some(&parent) = stack.last() {
                            assert!(slices[parent].start <= p.timestamp());
                        }
                        stack.push(slices.len());
                        slices.push(slice());
                    }
                    Type::TYPE_SLICE_END => {
                        let index = open.get_mut(&track).and_then(Vec::pop).expect("an end has its begin");
                        slices[index].end = Some(p.timestamp());
                    }
                    Type::TYPE_INSTANT => instants.push(slice()),
                    other => panic!("unexpected event type {other:?}"),
                }
            }
        }
        assert!(open.values().all(Vec::is_empty), "every slice ends");
        // Strictly nested per track: sorted by (start, longest first), each slice
        // lies within the innermost one still open.
        let mut by_track: HashMap<u64, Vec<&Slice>> = HashMap::new();
        for s in &slices {
            by_track.entry(s.track).or_default().push(s);
        }
        for list in by_track.values_mut() {
            list.sort_by_key(|s| (s.start, Reverse(s.end)));
            let mut stack: Vec<u64> = Vec::new();
            for s in list.iter() {
                while stack.last().is_some_and(|&e| e <= s.start) {
                    stack.pop();
                }
                let end = s.end.expect("ended");
                assert!(stack.last().is_none_or(|&e| end <= e), "{} straddles its track's open slice", s.name);
                stack.push(end);
            }
        }
        (tracks, slices, instants)
    }

    fn name(tracks: &HashMap<u64, TrackDescriptor>, uuid: u64) -> String {
        tracks[&uuid].name().to_string()
    }

    #[test]
    fn every_span_is_one_slice_on_the_track_of_its_group() {
        let timeline = timeline();
        let (tracks, slices, instants) = decode(&render(&timeline));
        let processes: Vec<&TrackDescriptor> = tracks.values().filter(|d| d.process.is_some()).collect();
        assert_eq!(processes.len(), 2, "a process track per build");
        assert!(processes.iter().any(|d| d.process.process_name() == "go mod download [100-1]"));
        // Each build: 12 spans and the build's own slice.
        assert_eq!(slices.len(), 2 * 13);
        let build = &timeline.builds[0];
        let of = |id: u32| {
            let found: Vec<&Slice> = slices
                .iter()
                .filter(|s| s.args.get("span_id") == Some(&json!(id)))
                .filter(|s| {
                    // The first build's: its tracks descend from its process track.
                    let mut uuid = s.track;
                    while let Some(parent) = tracks[&uuid].parent_uuid {
                        uuid = parent;
                    }
                    tracks[&uuid].process.process_name().contains("100-1")
                })
                .collect();
            assert_eq!(found.len(), 1, "span {id} is one slice");
            found[0]
        };
        for span in &build.spans {
            let s = of(span.id);
            assert_eq!(s.category, span.kind.as_str());
            assert_eq!(i128::from(s.start), parse_rfc3339(&span.start).unwrap(), "absolute times");
            if let Some(end) = &span.end {
                assert_eq!(i128::from(s.end.unwrap()), parse_rfc3339(end).unwrap());
            }
        }
        assert_eq!(of(8).name, "GET /a");
        assert_eq!(of(3).name, "dns A proxy.lab.test");
        assert_eq!(of(12).name, "connect 10.0.0.5:443 → dropped");
        assert_eq!(of(6).name, "transfer ↓10 B");
        assert_eq!(of(7).name, "tls sni=proxy.lab.test");
        assert_eq!(of(11).name, "m@v1");
        assert_eq!(of(1).name, "go mod download");
        assert_eq!(
            of(3).args["attrs"],
            json!({"qtype": "A", "answers": ["10.0.0.5"], "nested": {"a": [1, 2.5, true, "null"]}})
        );
        assert_eq!(of(3).args["role"], json!("dns"));
        assert_eq!(of(5).args["port"], json!(443));
        assert_eq!(of(7).args["parent_id"], json!(5));

        // Tracks: a connection with its tls, transfer and requests (the overlapping
        // one on a lane of it), the lookups per resolver, the module, the tree.
        assert_eq!(name(&tracks, of(5).track), "proxy.lab.test:443 (proxy) #5");
        for id in [6, 7, 8, 9, 10] {
            let track = of(id).track;
            let family = if track == of(5).track { track } else { tracks[&track].parent_uuid() };
            assert_eq!(family, of(5).track, "span {id} on its connection's track");
        }
        // The first request was sent before the dial: the connect nests in it.
        assert_eq!(of(8).track, of(5).track);
        // The transfer straddles that request, and the last request both.
        assert_eq!(name(&tracks, of(6).track), "proxy.lab.test:443 (proxy) #5 (2)");
        assert_eq!(name(&tracks, of(10).track), "proxy.lab.test:443 (proxy) #5 (3)");
        assert_eq!(name(&tracks, of(3).track), "resolver 10.0.0.2:53");
        assert_eq!(tracks[&of(4).track].parent_uuid(), of(3).track, "the overlapping lookup on a lane");
        assert_eq!(name(&tracks, of(11).track), "module m@v1");
        assert_eq!(name(&tracks, of(2).track), "git ls-remote [pid 100]");
        assert_eq!(tracks[&of(2).track].parent_uuid(), of(1).track, "a child process under its parent");
        assert_ne!(of(12).track, of(5).track, "a connection per track");

        // No end: ends with the build, says so.
        let unfinished = of(10);
        assert_eq!(i128::from(unfinished.end.unwrap()), parse_rfc3339(build.ended_at.as_ref().unwrap()).unwrap());
        assert_eq!(unfinished.args["unfinished"], json!(true));
        // The second build has no end: its end is the last time seen (the module's).
        let build_slices: Vec<&Slice> = slices.iter().filter(|s| s.category == "build").collect();
        assert_eq!(build_slices.len(), 2);
        assert!(
            build_slices.iter().any(|s| s.name == "go mod download (running)"
                && i128::from(s.end.unwrap()) == parse_rfc3339(&at(101.0)).unwrap())
        );

        // Flows: each request to its connection.
        for id in [8, 9, 10] {
            let flow = of(id).flows[..].to_vec();
            assert_eq!(flow.len(), 1);
            assert!(of(5).flows.contains(&flow[0]));
        }
        assert_eq!(of(5).flows.len(), 3);

        // Findings: on their first span's track at its start, else on the build's.
        assert_eq!(instants.len(), 4);
        let drop = instants.iter().find(|i| i.name == "firewall_drop").unwrap();
        assert_eq!((drop.track, drop.start), (of(12).track, of(12).start));
        assert_eq!(drop.args["message"], json!("dropped"));
        assert_eq!(drop.args["cost_ms"], json!(30.0));
        let lost = instants.iter().find(|i| i.name == "incomplete_trace").unwrap();
        assert!(tracks[&lost.track].process.is_some());
    }

    #[test]
    fn uuids_are_stable() {
        let timeline = timeline();
        assert_eq!(render(&timeline), render(&timeline));
    }

    #[test]
    fn an_empty_timeline_is_a_valid_trace() {
        let (tracks, slices, _) = decode(&render(&Timeline { schema_version: 1, builds: Vec::new() }));
        assert!(tracks.is_empty() && slices.is_empty());
    }

    #[test]
    fn lanes_nest_or_move_over() {
        let item = |start, end| Item { start, end, depth: 0, order: 0, mark: Mark::Slice(TrackEvent::new()) };
        // Nested, touching, overlapping, and one inside the overlapping one.
        let items = vec![item(0, 10), item(2, 5), item(5, 8), item(7, 12), item(10, 11), item(12, 12)];
        assert_eq!(lanes(&items), vec![0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn values_keep_their_types() {
        let a = annotation("x", &json!({"i": -1, "u": u64::MAX, "f": 1.5, "s": "t", "b": false, "l": [1]}));
        assert_eq!(a.name(), "x");
        assert_eq!(json_of(&a), json!({"i": -1, "u": u64::MAX, "f": 1.5, "s": "t", "b": false, "l": [1]}));
    }
}
