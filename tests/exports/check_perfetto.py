#!/usr/bin/env python3
"""Checks a Perfetto trace of gomod-trace (`--format perfetto`) against the timeline
JSON of the same builds (`--format json`), reading the trace with Perfetto's own
protos (the `perfetto` package on PyPI, installed by `cargo xtask setup`).

    check_perfetto.py TRACE.pftrace TIMELINE.json

What it checks: one packet sequence, its incremental state cleared first; track
descriptors unique and ahead of their events (parents ahead of children); one
process track per build; per track, slices balanced and strictly nested, in time
order; every span exactly one slice (by its `span_id` annotation) with its name,
category, start and duration in ns and all it holds as annotations; a span with no
end ends with the build and says `unfinished`; the spans of a connection, a module,
a resolver, a process on one track (with its overflow lanes) of their own, named
for what they are; one build slice per build; every finding an instant on the
track of its first span; a flow between every request and the connection that
carried it. Prints one summary line and exits 0, or lists the mismatches and
exits 1.
"""
import calendar
import json
import re
import sys
from collections import Counter, defaultdict

from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

BEGIN = pb.TrackEvent.TYPE_SLICE_BEGIN
END = pb.TrackEvent.TYPE_SLICE_END
INSTANT = pb.TrackEvent.TYPE_INSTANT
CLEARED = pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
NEEDS = pb.TracePacket.SEQ_NEEDS_INCREMENTAL_STATE


def parse_ns(text):
    """RFC 3339 (with up to ns) to ns since the Unix epoch; None if it is not."""
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)", text or "")
    if not m:
        return None
    year, month, day, hour, minute, second, frac, zone = m.groups()
    secs = calendar.timegm((int(year), int(month), int(day), int(hour), int(minute), int(second)))
    if zone not in ("Z", "z"):
        offset = int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
        secs -= offset if zone[0] == "+" else -offset
    return secs * 10**9 + int((frac or "0").ljust(9, "0"))


# --- What the timeline says the trace must hold ---------------------------------


def build_times(build):
    seen = [t for s in build["spans"] for t in (parse_ns(s["start"]), parse_ns(s.get("end"))) if t is not None]
    start = parse_ns(build["started_at"])
    if start is None:
        start = min(seen) if seen else 0
    end = parse_ns(build.get("ended_at"))
    if end is None:
        end = max(seen) if seen else start
    return start, max(start, end)


def span_times(span, build_start, build_end):
    start = parse_ns(span["start"])
    start = build_start if start is None else start
    if span.get("end") is None:
        end = build_end
    else:
        end = parse_ns(span["end"])
        end = start if end is None else end
    return start, max(start, end)


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def text_attr(span, key):
    v = span["attrs"].get(key)
    return v if isinstance(v, str) else None


def place(span):
    if span.get("host") is not None:
        return span["host"]
    if span.get("addr") is not None:
        return span["addr"]
    return "?"


def endpoint(addr, port):
    addr = f"[{addr}]" if ":" in addr else addr
    return addr if port is None else f"{addr}:{port}"


def command(span):
    argv = span["attrs"].get("argv")
    argv = [a for a in argv if isinstance(a, str)] if isinstance(argv, list) else []
    if argv:
        return " ".join(argv)
    comm = text_attr(span, "comm")
    return comm if comm is not None else "process"


def outcome_suffix(span):
    o = span.get("outcome")
    return f" → {o}" if o is not None and o != "ok" else ""


def version(span):
    v = text_attr(span, "version")
    return f"@{v}" if v is not None else ""


def slice_name(span):
    kind, attrs = span["kind"], span["attrs"]
    if kind == "process":
        code = attrs.get("exit_code")
        return command(span) + (f" → exit {code}" if is_int(code) and code != 0 else "")
    if kind == "dns":
        qtype = text_attr(span, "qtype")
        return "dns" + (f" {qtype}" if qtype is not None else "") + f" {place(span)}" + outcome_suffix(span)
    if kind == "connect":
        addr = span["addr"] if span.get("addr") is not None else place(span)
        return f"connect {endpoint(addr, span.get('port'))}" + outcome_suffix(span)
    if kind == "tls":
        sni = text_attr(span, "sni")
        return "tls" + (f" sni={sni}" if sni is not None else "") + outcome_suffix(span)
    if kind == "http":
        method = text_attr(span, "method")
        method = method if method is not None else "HTTP"
        target = text_attr(span, "target")
        target = target if target is not None else text_attr(span, "url")
        target = target if target is not None else place(span)
        status = attrs.get("status")
        return f"{method} {target}" + (f" → {status}" if is_int(status) else outcome_suffix(span))
    if kind == "transfer":
        out = "transfer"
        for key, arrow in (("bytes_received", "↓"), ("bytes_sent", "↑")):
            n = attrs.get(key)
            if is_int(n) and n >= 0:
                out += f" {arrow}{n} B"
        return out + outcome_suffix(span)
    if kind == "module":
        module = text_attr(span, "module")
        return (module if module is not None else "module") + version(span) + outcome_suffix(span)
    raise ValueError(f"unknown span kind {kind}")


def resolver(span):
    return endpoint(span["addr"], span.get("port")) if span.get("addr") is not None else "(unknown)"


def group_of(span, by_id):
    """Which track a span belongs on: (kind, key)."""
    kind = span["kind"]
    if kind == "process":
        return ("process", span["id"])
    if kind == "dns":
        return ("resolver", resolver(span))
    if kind in ("connect", "module"):
        return ("connection" if kind == "connect" else "module", span["id"])
    seen, parent = set(), by_id.get(span.get("parent"))
    while parent is not None and parent["id"] not in seen:
        seen.add(parent["id"])
        k = parent["kind"]
        if k == "connect":
            return ("connection", parent["id"])
        if k == "module":
            return ("module", parent["id"])
        if k == "process":
            return ("process", parent["id"])
        if k == "dns":
            return ("resolver", resolver(parent))
        parent = by_id.get(parent.get("parent"))
    return ("other", 0)


def track_name(group, first):
    """The track's name, from the group and its first span in the timeline."""
    kind = group[0]
    if kind == "process":
        return f"{command(first)} [pid {first['pid']}]"
    if kind == "resolver":
        return f"resolver {group[1]}"
    if kind == "connection":
        where = place(first) if first.get("port") is None else f"{place(first)}:{first['port']}"
        return f"{where} ({first['role']}) #{first['id']}"
    if kind == "module":
        module = text_attr(first, "module")
        return f"module {module}{version(first)}" if module is not None else f"module #{first['id']}"
    return "other spans"


def connection_of(span, by_id):
    seen, parent = set(), by_id.get(span.get("parent"))
    while parent is not None and parent["id"] not in seen:
        seen.add(parent["id"])
        if parent["kind"] == "connect":
            return parent
        parent = by_id.get(parent.get("parent"))
    return None


# --- What the trace holds -------------------------------------------------------


EMPTY = object()


def value(annotation):
    """A debug annotation as JSON-like Python (an empty array or dict: EMPTY)."""
    if annotation.dict_entries:
        return {e.name: value(e) for e in annotation.dict_entries}
    if annotation.array_values:
        return [value(e) for e in annotation.array_values]
    which = annotation.WhichOneof("value")
    if which is None:
        return EMPTY
    return getattr(annotation, which)


def same(expected, got):
    """The timeline's value and the annotation's: null is the string `null`."""
    if got is EMPTY:
        return expected in ([], {})
    if expected is None:
        return got == "null"
    if isinstance(expected, dict):
        return (isinstance(got, dict) and expected.keys() == got.keys()
                and all(same(v, got[k]) for k, v in expected.items()))
    if isinstance(expected, list):
        return isinstance(got, list) and len(expected) == len(got) and all(same(e, g) for e, g in zip(expected, got))
    if isinstance(expected, bool) or isinstance(got, bool):
        return isinstance(expected, bool) and isinstance(got, bool) and expected == got
    if isinstance(expected, float) or isinstance(got, float):
        return isinstance(expected, (int, float)) and isinstance(got, (int, float)) and float(expected) == float(got)
    return expected == got and type(expected) is type(got)


class Slice:
    def __init__(self, track, ts, event, parent):
        self.track, self.ts, self.end = track, ts, None
        self.name, self.categories = event.name, list(event.categories)
        self.args = {a.name: value(a) for a in event.debug_annotations}
        self.flows = list(event.flow_ids) + list(event.terminating_flow_ids)
        self.parent = parent
        self.depth = 0 if parent is None else parent.depth + 1


def read_trace(path, errors):
    trace = pb.Trace.FromString(open(path, "rb").read())
    tracks = {}
    open_slices = defaultdict(list)
    slices, instants = [], []
    sequences, last_ts = set(), None
    for i, packet in enumerate(trace.packet):
        if i == 0 and not packet.sequence_flags & CLEARED:
            errors.append("the first packet does not clear the sequence's incremental state")
        if packet.sequence_flags & NEEDS:
            errors.append(f"packet {i} needs incremental state: interning is not used")
        if packet.HasField("trusted_packet_sequence_id"):
            sequences.add(packet.trusted_packet_sequence_id)
        else:
            errors.append(f"packet {i} has no trusted_packet_sequence_id")
        if packet.HasField("track_descriptor"):
            d = packet.track_descriptor
            if d.uuid in tracks:
                errors.append(f"track uuid {d.uuid:#x} described twice")
            if d.HasField("parent_uuid") and d.parent_uuid not in tracks:
                errors.append(f"track {d.name!r} ({d.uuid:#x}) comes before its parent {d.parent_uuid:#x}")
            tracks[d.uuid] = d
        if packet.HasField("track_event"):
            e, ts = packet.track_event, packet.timestamp
            if e.track_uuid not in tracks:
                errors.append(f"event {e.name!r} (packet {i}) on track {e.track_uuid:#x} "
                              "before (or without) its descriptor")
            if last_ts is not None and ts < last_ts:
                errors.append(f"packet {i} ({e.name!r}) at {ts} after one at {last_ts}: events out of time order")
            last_ts = ts
            stack = open_slices[e.track_uuid]
            if e.type == BEGIN:
                s = Slice(e.track_uuid, ts, e, stack[-1] if stack else None)
                stack.append(s)
                slices.append(s)
            elif e.type == END:
                if not stack:
                    errors.append(f"slice end at {ts} on track {e.track_uuid:#x} with no slice open")
                    continue
                stack.pop().end = ts
            elif e.type == INSTANT:
                instants.append(Slice(e.track_uuid, ts, e, stack[-1] if stack else None))
            else:
                errors.append(f"event {e.name!r} of type {e.type}: only slices and instants are expected")
    for uuid, stack in open_slices.items():
        for s in stack:
            errors.append(f"slice {s.name!r} on track {uuid:#x} never ends (unbalanced)")
    for s in slices:
        p = s.parent
        if p is not None and p.end is not None and s.end is not None and not (p.ts <= s.ts and s.end <= p.end):
            errors.append(f"slice {s.name!r} ({s.ts}..{s.end}) is not within its parent {p.name!r} ({p.ts}..{p.end})")
    if len(sequences) > 1:
        errors.append(f"{len(sequences)} packet sequences: one is expected")
    return tracks, slices, instants


# --- The check ------------------------------------------------------------------


class Trace:
    """The trace as read, with each track's build (its process track) and family
    (a track and its overflow lanes, `NAME (2)`)."""

    def __init__(self, path, errors):
        self.tracks, self.slices, self.instants = read_trace(path, errors)
        self.process_tracks = {u: d for u, d in self.tracks.items() if d.HasField("process")}

    def root(self, uuid):
        seen = set()
        while uuid in self.tracks and self.tracks[uuid].HasField("parent_uuid") and uuid not in seen:
            seen.add(uuid)
            uuid = self.tracks[uuid].parent_uuid
        return uuid

    def family(self, uuid):
        d = self.tracks.get(uuid)
        parent = self.tracks.get(d.parent_uuid) if d is not None and d.HasField("parent_uuid") else None
        if parent is not None and re.fullmatch(re.escape(parent.name) + r" \(\d+\)", d.name):
            return parent.uuid
        return uuid

    def name(self, uuid):
        d = self.tracks.get(uuid)
        if d is None:
            return f"{uuid:#x}"
        return d.process.process_name if d.HasField("process") else d.name


def check_build(build, trace, ptrack, slices, instants, fail, counts):
    start, end = build_times(build)
    by_id = {s["id"]: s for s in build["spans"]}

    # The build slice, on the build's process track.
    build_slices = [s for s in slices if s.categories == ["build"]]
    if len(build_slices) != 1:
        fail(f"{len(build_slices)} build slices")
    for s in build_slices:
        code = build.get("exit_code")
        result = f" → exit {code}" if code is not None else ("" if build.get("ended_at") else " (running)")
        want = " ".join(build["command"]) + result
        if s.track != ptrack:
            fail("the build slice is not on the build's process track")
        if s.name != want:
            fail(f"the build slice is named {s.name!r}, not {want!r}")
        if (s.ts, s.end) != (start, end):
            fail(f"the build slice is at {s.ts}..{s.end}, not {start}..{end}")
        if s.args.get("build_id") != build["id"] or not same(build["config"], s.args.get("config", EMPTY)):
            fail(f"the build slice's annotations differ: {s.args}")

    # Spans: exactly one slice each, as the timeline says.
    by_span = defaultdict(list)
    for s in slices:
        if s.categories == ["build"]:
            continue
        if not is_int(s.args.get("span_id")):
            fail(f"slice {s.name!r} has no span_id")
            continue
        by_span[s.args["span_id"]].append(s)
    for sid in set(by_span) - set(by_id):
        fail(f"slice {by_span[sid][0].name!r} is of span {sid}, which the timeline does not have")
    slice_of = {}
    for span in build["spans"]:
        got = by_span.get(span["id"], [])
        if len(got) != 1:
            fail(f"span {span['id']} ({span['kind']}) is {len(got)} slices")
            continue
        s = slice_of[span["id"]] = got[0]
        counts["spans"] += 1
        counts["depth"] = max(counts["depth"], s.depth)
        s_start, s_end = span_times(span, start, end)
        problems = []
        if s.name != slice_name(span):
            problems.append(f"name {s.name!r}, not {slice_name(span)!r}")
        if s.categories != [span["kind"]]:
            problems.append(f"categories {s.categories}")
        if s.ts != s_start:
            problems.append(f"starts at {s.ts}, not {s_start}")
        if s.end is None or s.end - s.ts != s_end - s_start:
            problems.append(f"lasts {None if s.end is None else s.end - s.ts} ns, not {s_end - s_start}")
        want = {"span_id": span["id"], "pid": span["pid"], "role": span["role"]}
        for key, arg in (("parent", "parent_id"), ("host", "host"), ("addr", "addr"), ("port", "port"),
                         ("outcome", "outcome"), ("duration_ms", "duration_ms")):
            if span.get(key) is not None:
                want[arg] = span[key]
        if span.get("end") is None:
            want["unfinished"] = True
        if span["attrs"]:
            want["attrs"] = span["attrs"]
        differ = sorted(k for k in want.keys() | s.args.keys() if not same(want.get(k), s.args.get(k, EMPTY)))
        if differ:
            problems.append("annotations differ: " + ", ".join(
                f"{k}={s.args.get(k)!r} (timeline: {want.get(k)!r})" for k in differ))
        if problems:
            fail(f"span {span['id']} ({span['kind']}): " + "; ".join(problems))

    # Tracks: a group's slices on one family of tracks of its own, named for it.
    families, groups_on, first = defaultdict(set), defaultdict(set), {}
    for span in build["spans"]:
        if span["id"] in slice_of:
            group, fam = group_of(span, by_id), trace.family(slice_of[span["id"]].track)
            first.setdefault(group, span)
            families[group].add(fam)
            groups_on[fam].add(group)
    for group, fams in families.items():
        if len(fams) != 1:
            fail(f"{group} is on {len(fams)} tracks")
            continue
        fam = next(iter(fams))
        if len(groups_on[fam]) != 1:
            fail(f"track {trace.name(fam)!r} holds {sorted(map(str, groups_on[fam]))}")
        if trace.name(fam) != track_name(group, first[group]):
            fail(f"the track of {group} is named {trace.name(fam)!r}, not {track_name(group, first[group])!r}")
        if fam == ptrack:
            fail(f"{group} is on the build's own track")
    counts["groups"] += len(families)
    counts["lanes"] += sum(1 for u in trace.tracks if trace.root(u) == ptrack and trace.family(u) != u)

    # Findings: an instant each, on the track of the first span's slice, at its start.
    pending = list(instants)
    for finding in build["findings"]:
        target = slice_of.get(finding["spans"][0]) if finding["spans"] else None
        at = (target.track, target.ts) if target else (ptrack, start)
        want = {k: finding[k] for k in ("severity", "message", "remedy", "cost_ms", "spans")}
        hit = next((i for i in pending if i.name == finding["kind"] and same(want, i.args)), None)
        if hit is None:
            fail(f"finding {finding['kind']} ({finding['message'][:60]!r}) has no instant")
            continue
        pending.remove(hit)
        if (hit.track, hit.ts) != at:
            fail(f"finding {finding['kind']} is at {hit.ts} on {trace.name(hit.track)!r}, "
                 f"not on the track of its first span at {at[1]}")
        counts["findings"] += 1
    for extra in pending:
        fail(f"instant {extra.name!r} is no finding of the timeline")

    # Flows: each request to the connection that carried it, and no other.
    uses = Counter(f for s in slices for f in s.flows)
    for span in build["spans"]:
        connection = connection_of(span, by_id) if span["kind"] == "http" else None
        if connection is None or span["id"] not in slice_of or connection["id"] not in slice_of:
            continue
        shared = set(slice_of[span["id"]].flows) & set(slice_of[connection["id"]].flows)
        if len(shared) != 1:
            fail(f"request {span['id']} has {len(shared)} flows to its connection {connection['id']}")
            continue
        flow = shared.pop()
        if uses[flow] != 2:
            fail(f"the flow {flow:#x} of request {span['id']} is on {uses[flow]} slices")
        counts["flows"] += 1
    counts["flow_ids"] += len(uses)


def check(trace_path, timeline_path):
    errors = []
    timeline = json.load(open(timeline_path))
    trace = Trace(trace_path, errors)
    builds = timeline["builds"]
    if len(trace.process_tracks) != len(builds):
        errors.append(f"{len(trace.process_tracks)} process tracks for {len(builds)} builds")
    for u in trace.tracks:
        if trace.root(u) not in trace.process_tracks:
            errors.append(f"track {trace.name(u)!r} is under no build's process track")
    slices, instants = defaultdict(list), defaultdict(list)
    for s in trace.slices:
        slices[trace.root(s.track)].append(s)
    for s in trace.instants:
        instants[trace.root(s.track)].append(s)

    counts = Counter()
    for build in builds:
        name = f"{' '.join(build['command'])} [{build['id']}]"
        found = [u for u, d in trace.process_tracks.items()
                 if d.process.process_name == name and d.process.pid == build["pid"]]
        if len(found) != 1:
            errors.append(f"build {build['id']}: {len(found)} process tracks named {name!r} with pid {build['pid']}")
            continue
        counts["builds"] += 1

        def fail(message, build=build):
            errors.append(f"build {build['id']}: {message}")

        ptrack = found[0]
        check_build(build, trace, ptrack, slices.pop(ptrack, []), instants.pop(ptrack, []), fail, counts)

    for ptrack, rest in slices.items():
        errors.append(f"{len(rest)} slices on the tracks of no build of the timeline ({trace.name(ptrack)!r})")
    for ptrack, rest in instants.items():
        errors.append(f"{len(rest)} instants on the tracks of no build of the timeline ({trace.name(ptrack)!r})")
    if counts["flow_ids"] != counts["flows"]:
        errors.append(f"{counts['flow_ids']} flow ids for {counts['flows']} requests: a flow leads nowhere")
    return errors, counts, len(trace.tracks), len(trace.slices), len(trace.instants)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: check_perfetto.py TRACE.pftrace TIMELINE.json")
    try:
        errors, counts, n_tracks, n_slices, n_instants = check(sys.argv[1], sys.argv[2])
    except Exception as e:  # an unreadable trace or timeline is a mismatch too
        print(f"perfetto check FAILED: cannot read: {type(e).__name__}: {e}")
        sys.exit(1)
    if errors:
        print(f"perfetto check FAILED: {len(errors)} mismatches between {sys.argv[1]} and {sys.argv[2]}:")
        for e in errors[:25]:
            print(f"  - {e}")
        if len(errors) > 25:
            print(f"  … and {len(errors) - 25} more")
        sys.exit(1)
    print(
        f"perfetto ok: {counts['builds']} builds, {counts['spans']} spans = {n_slices - counts['builds']} slices "
        f"(+{counts['builds']} build slices) on {n_tracks} tracks ({counts['groups']} groups, "
        f"{counts['lanes']} overflow lanes, max depth {counts['depth']}), "
        f"{counts['findings']} findings = {n_instants} instants, {counts['flows']} request flows, nesting ok"
    )


if __name__ == "__main__":
    main()
