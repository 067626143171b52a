// gomod-trace's HTML export: draws the embedded timeline (contract.md). Every
// piece of data reaches the page through textContent or a data-* attribute,
// never as markup. No network: the page's CSP forbids it and nothing here asks.
//
// Test hooks (stable): each build is a <section data-build-index="i"
// data-build-id="…">; in it each span is an element [data-span-id] (ids are per
// build), each finding [data-finding-kind] (role=button, aria-pressed when its
// spans are highlighted; highlighted spans have the class "hl"), the axis ticks
// are [data-axis] .tick. The details of the selected span are in #details
// (dl.fields: the span's fields, dl.attrs: its attrs; dt = name, dd = value).
// window.gomodTrace: ready, timings, view(i), zoom(i, startMs, endMs),
// zoomBy(i, factor), reset(i), select(i, spanId), highlight(i, findingIndex).
(function () {
  'use strict';
  const t0 = performance.now();
  const api = { ready: false, timings: {}, builds: [] };
  window.gomodTrace = api;
  const data = JSON.parse(document.getElementById('timeline').textContent);
  api.timings.parse = performance.now() - t0;

  const ROLES = ['proxy', 'sumdb', 'vcs', 'https_proxy', 'dns', 'other'];
  const GROUP_TITLES = {
    proxy: 'Module proxies (GOPROXY)',
    sumdb: 'Checksum database (GOSUMDB)',
    vcs: 'Version control hosts (direct)',
    https_proxy: 'HTTP(S) proxies (HTTPS_PROXY)',
    dns: 'DNS lookups',
    other: 'Other endpoints',
    module: 'Modules',
    process: 'Processes',
  };
  const SEVERITY_RANK = { error: 0, warning: 1, info: 2 };
  const KEY_CONFIG = ['GOPROXY', 'GOSUMDB', 'GOPRIVATE', 'GONOPROXY', 'GONOSUMDB', 'GOINSECURE',
    'GONOSUMCHECK', 'GOFLAGS', 'HTTPS_PROXY', 'HTTP_PROXY', 'NO_PROXY'];
  const KINDS = ['process', 'dns', 'connect', 'tls', 'transfer', 'http', 'module'];
  // Lanes of a row, top to bottom: connection lifetimes, handshakes (and
  // everything that is neither), requests.
  const LANE_CLASS = { transfer: 0, connect: 1, tls: 1, dns: 1, module: 1, process: 1, http: 2 };
  const LANE_H = 15;
  const ROW_PAD = 4;
  const ROW_MIN = 30;
  const MIN_WINDOW_MS = 0.001;
  // More rows than this: rows out of sight are not rendered (content-visibility).
  const VIRTUAL_ROWS = 60;

  // ---------------------------------------------------------------- helpers
  function el(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function append(parent, ...children) {
    for (const c of children) if (c) parent.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    return parent;
  }
  function button(className, text, label, onClick) {
    const b = el('button', className, text);
    b.type = 'button';
    if (label) { b.title = label; b.setAttribute('aria-label', label); }
    b.addEventListener('click', onClick);
    return b;
  }

  // RFC 3339 with up to nanoseconds, as whole milliseconds since the epoch and
  // the fraction below them: subtracting two keeps nanosecond precision.
  const TIME_RE = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/i;
  function parseTime(text) {
    if (typeof text !== 'string') return null;
    const m = TIME_RE.exec(text);
    if (!m) {
      const ms = Date.parse(text);
      return Number.isFinite(ms) ? { ms, frac: 0 } : null;
    }
    const ms = Date.parse(m[1] + m[3]);
    if (!Number.isFinite(ms)) return null;
    const digits = (m[2] || '').slice(0, 9).padEnd(9, '0');
    return { ms: ms + Number(digits.slice(0, 3)), frac: Number(digits.slice(3)) / 1e6 };
  }
  function since(t, origin) {
    return (t.ms - origin.ms) + (t.frac - origin.frac);
  }

  function fmtDur(ms) {
    if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
    const a = Math.abs(ms);
    const sign = ms < 0 ? '−' : '';
    if (a === 0) return '0';
    if (a < 0.001) return sign + (a * 1e6).toFixed(0) + ' ns';
    if (a < 1) return sign + (a * 1000).toFixed(a < 0.01 ? 1 : 0) + ' µs';
    if (a < 1000) return sign + a.toFixed(a < 10 ? 2 : a < 100 ? 1 : 0) + ' ms';
    if (a < 60000) return sign + (a / 1000).toFixed(a < 10000 ? 2 : 1) + ' s';
    const totalS = Math.round(a / 1000);
    const h = Math.floor(totalS / 3600), m = Math.floor(totalS / 60) % 60, s = totalS % 60;
    return sign + (h ? h + ' h ' + m + ' min' : m + ' min ' + s + ' s');
  }
  function fmtBytes(n) {
    if (typeof n !== 'number') return '?';
    if (n < 1000) return n + ' B';
    if (n < 1e6) return (n / 1e3).toFixed(n < 1e4 ? 1 : 0) + ' kB';
    if (n < 1e9) return (n / 1e6).toFixed(n < 1e7 ? 1 : 0) + ' MB';
    return (n / 1e9).toFixed(1) + ' GB';
  }
  // Attribute values as text: arrays of scalars joined, objects as JSON.
  function fmtValue(v) {
    if (v === null || v === undefined) return '—';
    if (Array.isArray(v) && v.every((x) => x === null || typeof x !== 'object')) return v.map(String).join(', ');
    if (typeof v === 'object') return JSON.stringify(v);
    return String(v);
  }
  function shellWord(w) {
    w = String(w);
    return /^[\w@%+=:,./-]+$/.test(w) ? w : "'" + w.replace(/'/g, "'\\''") + "'";
  }
  function commandLine(argv) {
    return Array.isArray(argv) ? argv.map(shellWord).join(' ') : String(argv || '');
  }
  function basename(p) {
    const s = String(p || '');
    return s.slice(s.lastIndexOf('/') + 1);
  }
  function endpoint(host, port) {
    if (!host) return port ? ':' + port : '?';
    const h = host.includes(':') ? '[' + host + ']' : host;
    return port ? h + ':' + port : h;
  }
  function isFailure(s) {
    return s.outcome !== null && s.outcome !== undefined && s.outcome !== 'ok';
  }

  // What a span is, in a few words (as the terminal view says it).
  function describe(s) {
    const a = s.attrs || {};
    switch (s.kind) {
      case 'process': {
        const argv = Array.isArray(a.argv) ? a.argv.slice() : [];
        if (argv.length) argv[0] = basename(argv[0]);
        return argv.length ? commandLine(argv) : (a.comm || 'process');
      }
      case 'dns': {
        const q = a.qtype ? String(a.qtype) : 'query';
        const answers = Array.isArray(a.answers) ? a.answers : [];
        if (a.rcode === 'NOERROR' && answers.length) return q + ' → ' + answers.join(', ');
        if (a.rcode === 'NOERROR') return q + ' (no records)';
        if (a.rcode) return q + ' ' + a.rcode;
        return q + ' (no answer)';
      }
      case 'connect': {
        const parts = ['connect'];
        if (isFailure(s)) parts.push(s.outcome);
        if (a.syn_retransmits > 0) parts.push(a.syn_retransmits + ' SYN retransmits');
        if (a.drop_reason) parts.push('dropped: ' + a.drop_reason);
        if (a.error) parts.push(String(a.error));
        return parts.join(', ');
      }
      case 'tls': {
        if (a.alert) return 'TLS alert ' + a.alert + (a.alert_from ? ' from ' + a.alert_from : '');
        return ['TLS', a.version, a.alpn].filter(Boolean).join(' ') + (isFailure(s) ? ' ' + s.outcome : '');
      }
      case 'http': {
        const head = [a.method, a.target].filter((x) => x !== undefined && x !== null).join(' ') || 'request';
        if (a.status !== undefined && a.status !== null) return head + ' → ' + a.status;
        if (a.error) return head + ' ✗ ' + a.error;
        return head + (isFailure(s) ? ' ✗ ' + s.outcome : ' (no answer)');
      }
      case 'transfer':
        return '↑' + fmtBytes(a.bytes_sent) + ' ↓' + fmtBytes(a.bytes_received) + (isFailure(s) ? ' ' + s.outcome : '');
      case 'module':
        return 'via ' + (a.source || '?') + (a.files ? ' (' + fmtValue(a.files) + ')' : '') + (isFailure(s) ? ' ' + s.outcome : '');
      default:
        return s.kind;
    }
  }

  // Which row a span goes to: [group, key, label, sublabel].
  function rowOf(s) {
    const a = s.attrs || {};
    if (s.kind === 'process') {
      const name = a.comm || basename(Array.isArray(a.argv) ? a.argv[0] : '') || 'process';
      return ['process', 'p:' + name, String(name), 'processes named ' + name];
    }
    if (s.kind === 'module') {
      const name = (a.module || '?') + '@' + (a.version || '?');
      return ['module', 'm:' + name, name, a.source ? 'via ' + a.source : ''];
    }
    const group = ROLES.includes(s.role) ? s.role : 'other';
    const server = endpoint(s.addr, s.port);
    if (s.kind === 'dns') {
      return [group, 'd:' + (s.host || '') + '|' + server, s.host || '(unknown name)', 'lookups via ' + server];
    }
    const name = endpoint(s.host || s.addr, s.port);
    const sub = [];
    if (s.host && s.addr) sub.push(s.addr);
    if (a.entry) sub.push(String(a.entry));
    else if (a.target_entry) sub.push('tunnel for ' + a.target_entry);
    return [group, 'e:' + group + '|' + name, name, sub.join(' · ')];
  }

  // ---------------------------------------------------------------- a build
  class BuildView {
    constructor(build, index) {
      this.build = build;
      this.index = index;
      this.origin = parseTime(build.started_at) || { ms: 0, frac: 0 };
      this.byId = new Map();
      this.spans = (build.spans || []).map((s) => {
        const st = parseTime(s.start);
        const en = parseTime(s.end);
        const start = st ? since(st, this.origin) : 0;
        let end = en ? since(en, this.origin) : (typeof s.duration_ms === 'number' ? start + s.duration_ms : null);
        const v = { s, start, end, open: !s.end, failed: isFailure(s), el: null, row: null, lane: 0, shown: null };
        this.byId.set(s.id, v);
        return v;
      });
      const ended = parseTime(build.ended_at);
      let last = ended ? since(ended, this.origin) : 0;
      let first = 0;
      for (const v of this.spans) {
        first = Math.min(first, v.start);
        last = Math.max(last, v.start, v.end === null ? v.start : v.end);
      }
      for (const v of this.spans) if (v.end === null) v.end = last;
      this.duration = ended ? since(ended, this.origin) : null;
      this.extent = [first, Math.max(last, first + MIN_WINDOW_MS)];
      this.view = this.extent.slice();
      this.findings = (build.findings || []).map((f, i) => ({ f, i }))
        .sort((x, y) => (SEVERITY_RANK[x.f.severity] ?? 3) - (SEVERITY_RANK[y.f.severity] ?? 3) || x.i - y.i);
      this.findingsOf = new Map();
      for (const { f, i } of this.findings) for (const id of f.spans || []) {
        if (!this.findingsOf.has(id)) this.findingsOf.set(id, []);
        this.findingsOf.get(id).push(i);
      }
      this.highlighted = null;
      this.trackWidth = 800;
      this.buildRows();
    }

    buildRows() {
      const rows = new Map();
      for (const v of this.spans) {
        const [group, key, label, sub] = rowOf(v.s);
        let row = rows.get(key);
        if (!row) {
          row = { group, key, label, sub, spans: [], lanes: 1, failures: 0, first: v.start };
          rows.set(key, row);
        }
        row.spans.push(v);
        row.first = Math.min(row.first, v.start);
        if (v.failed) row.failures++;
        v.row = row;
      }
      const order = ROLES.concat(['module', 'process']);
      this.groups = order.map((g) => ({
        group: g,
        rows: [...rows.values()].filter((r) => r.group === g).sort((a, b) => a.first - b.first || (a.label < b.label ? -1 : 1)),
      })).filter((g) => g.rows.length);
      this.rows = this.groups.flatMap((g) => g.rows);
      for (const row of this.rows) {
        row.spans.sort((a, b) => a.start - b.start || b.end - a.end || a.s.id - b.s.id);
        // Interval packing by time (not pixels: lanes do not move on zoom).
        const classes = [[], [], []];
        const laneOf = new Map();
        for (const v of row.spans) {
          const c = LANE_CLASS[v.s.kind] ?? 1;
          const ends = classes[c];
          let lane = ends.findIndex((e) => e <= v.start);
          if (lane < 0) { lane = ends.length; ends.push(v.end); } else ends[lane] = v.end;
          laneOf.set(v, [c, lane]);
        }
        const offset = [0, classes[0].length, classes[0].length + classes[1].length];
        for (const v of row.spans) {
          const [c, lane] = laneOf.get(v);
          v.lane = offset[c] + lane;
        }
        row.lanes = Math.max(1, offset[2] + classes[2].length);
        row.byStart = row.spans;
      }
    }

    render() {
      const b = this.build;
      const sec = el('section', 'build');
      sec.id = 'build-' + this.index;
      sec.dataset.buildIndex = String(this.index);
      sec.dataset.buildId = String(b.id);
      sec.setAttribute('aria-label', 'Build ' + b.id);
      this.section = sec;
      append(sec, this.renderHeader(), this.renderFindings(), this.renderTimeline());
      return sec;
    }

    renderHeader() {
      const b = this.build;
      const head = el('header', 'build-head');
      const title = el('h2', 'command');
      title.textContent = commandLine(b.command);
      const badges = el('div', 'badges');
      let exit;
      if (b.state === 'running') exit = el('span', 'badge running', 'running');
      else if (b.exit_code === null || b.exit_code === undefined) exit = el('span', 'badge warn', 'exit status unknown');
      else exit = el('span', 'badge ' + (b.exit_code === 0 ? 'ok' : 'bad'), 'exit ' + b.exit_code);
      exit.dataset.exit = String(b.exit_code);
      const complete = b.complete
        ? el('span', 'badge ok-quiet', 'complete trace')
        : el('span', 'badge warn', 'INCOMPLETE trace');
      complete.dataset.complete = String(!!b.complete);
      append(badges, exit, complete);
      const counts = this.countFindings();
      if (counts.error) append(badges, el('span', 'badge bad', counts.error + (counts.error > 1 ? ' errors' : ' error')));
      if (counts.warning) append(badges, el('span', 'badge warn', counts.warning + (counts.warning > 1 ? ' warnings' : ' warning')));
      append(head, append(el('div', 'title-line'), title, badges));

      const facts = el('dl', 'facts');
      const fact = (k, v, cls) => {
        const dd = el('dd', cls, v);
        append(facts, append(el('div'), el('dt', null, k), dd));
      };
      fact('build', b.id, 'mono');
      fact('started', String(b.started_at).replace('T', ' ').replace(/(\.\d{3})\d*/, '$1').replace(/Z$/, ' UTC'), 'mono');
      fact('duration', this.duration === null ? 'still running' : fmtDur(this.duration));
      fact('pid', b.pid, 'mono');
      fact('spans', String(this.spans.length) + ' in ' + this.rows.length + ' rows');
      head.appendChild(facts);

      if (!b.complete || (b.notes && b.notes.length)) {
        const notes = el('ul', 'notes');
        if (!b.complete) append(notes, el('li', null, 'The kernel lost events of this build or tracing started late: spans may be missing, and findings are stated with that caveat.'));
        for (const n of b.notes || []) append(notes, el('li', null, n));
        head.appendChild(notes);
      }

      const config = b.config || {};
      const keys = KEY_CONFIG.filter((k) => config[k]);
      const table = el('dl', 'config');
      for (const k of keys) {
        const dd = el('dd', 'mono', config[k].value);
        dd.title = 'source: ' + config[k].source;
        append(table, append(el('div'), el('dt', null, k), append(dd, ' ', el('span', 'source', config[k].source))));
      }
      head.appendChild(table);
      const rest = Object.keys(config).filter((k) => !keys.includes(k)).sort();
      if (rest.length) {
        const more = el('details', 'more-config');
        append(more, el('summary', null, 'all configuration (' + Object.keys(config).length + ')'));
        const all = el('dl', 'config');
        for (const k of Object.keys(config).sort()) {
          append(all, append(el('div'), el('dt', null, k),
            append(el('dd', 'mono', config[k].value), ' ', el('span', 'source', config[k].source))));
        }
        more.appendChild(all);
        head.appendChild(more);
      }
      return head;
    }

    countFindings() {
      const c = { error: 0, warning: 0, info: 0 };
      for (const { f } of this.findings) c[f.severity] = (c[f.severity] || 0) + 1;
      return c;
    }

    renderFindings() {
      const box = el('section', 'findings-block');
      box.setAttribute('aria-label', 'Findings');
      append(box, el('h3', null, 'Findings'));
      if (!this.findings.length) {
        append(box, el('p', 'muted no-findings', this.build.complete
          ? 'No findings: nothing failed or looked wrong.'
          : 'No findings in what was seen (the trace is incomplete).'));
        return box;
      }
      const list = el('div', 'findings');
      list.setAttribute('role', 'list');
      this.findingEls = new Map();
      for (const { f, i } of this.findings) {
        const item = el('div', 'finding sev-' + f.severity);
        item.dataset.findingKind = String(f.kind);
        item.dataset.findingIndex = String(i);
        item.setAttribute('role', 'button');
        item.tabIndex = 0;
        item.setAttribute('aria-pressed', 'false');
        const n = (f.spans || []).length;
        item.title = n ? 'Show its ' + n + ' span(s) in the timeline' : 'No span to show';
        const top = el('div', 'finding-top');
        append(top,
          el('span', 'sev', String(f.severity).toUpperCase()),
          el('code', 'kind', f.kind),
          el('span', 'cost', 'cost ' + (f.cost_ms ? fmtDur(f.cost_ms) : '0 ms')),
          el('span', 'nspans', n === 1 ? '1 span' : n + ' spans'));
        append(item, top, el('p', 'message', f.message));
        if (f.remedy) append(item, append(el('p', 'remedy'), el('span', 'remedy-label', 'Remedy '), el('span', null, f.remedy)));
        const activate = () => this.highlight(this.highlighted === i ? null : i, true);
        item.addEventListener('click', activate);
        item.addEventListener('keydown', (e) => {
          if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); activate(); }
        });
        this.findingEls.set(i, item);
        list.appendChild(item);
      }
      box.appendChild(list);
      return box;
    }

    renderTimeline() {
      const box = el('section', 'timeline-block');
      box.setAttribute('aria-label', 'Timeline');
      const bar = el('div', 'toolbar');
      const legend = el('div', 'legend');
      const kindsHere = new Set(this.spans.map((v) => v.s.kind));
      for (const k of KINDS) if (kindsHere.has(k)) append(legend, append(el('span', 'key'), el('i', 'sw k-' + k), k));
      if (this.spans.some((v) => v.failed)) append(legend, append(el('span', 'key'), el('i', 'sw failed'), 'failed'));
      this.rangeLabel = el('span', 'range muted');
      const controls = el('div', 'controls');
      append(controls,
        button('pan', '◀', 'Pan left', () => this.panBy(-0.25)),
        button('zoom-out', '−', 'Zoom out (−)', () => this.zoomBy(0.5)),
        button('zoom-in', '+', 'Zoom in (+)', () => this.zoomBy(2)),
        button('pan', '▶', 'Pan right', () => this.panBy(0.25)),
        button('reset', 'Reset zoom', 'Show the whole build (0)', () => this.reset()));
      append(bar, append(el('h3'), 'Timeline'), legend, this.rangeLabel, controls);
      box.appendChild(bar);
      append(box, el('p', 'hint muted',
        'Drag across the timeline or Ctrl+wheel to zoom, Shift+wheel to pan. Click a span for its details; with the timeline focused, arrow keys move between spans, + − 0 zoom, Esc clears.'));

      const body = el('div', 'tl-body');
      const tl = el('div', 'tl');
      tl.tabIndex = 0;
      tl.setAttribute('aria-label', 'Timeline of build ' + this.build.id + ': arrow keys select spans, + and − zoom, 0 resets');
      this.tl = tl;
      if (this.rows.length > VIRTUAL_ROWS) tl.classList.add('virtual');
      const axis = el('div', 'axis');
      const corner = el('div', 'axis-corner muted', 'since start');
      this.axisTrack = el('div', 'axis-track');
      this.axisTrack.dataset.axis = '';
      append(axis, corner, this.axisTrack);
      const rows = el('div', 'rows');
      this.rowsEl = rows;
      this.grid = el('div', 'grid');
      this.brush = el('div', 'brush');
      this.brush.hidden = true;
      rows.appendChild(this.grid);
      for (const g of this.groups) {
        const gh = el('div', 'group-head');
        const n = g.rows.length;
        const what = g.group === 'module' ? 'module' : g.group === 'process' ? 'command' : g.group === 'dns' ? 'name' : 'endpoint';
        append(gh, el('span', 'group-title', GROUP_TITLES[g.group]), el('span', 'muted', ' ' + n + ' ' + what + (n > 1 ? 's' : '')));
        gh.dataset.group = g.group;
        rows.appendChild(gh);
        for (const row of g.rows) rows.appendChild(this.renderRow(row));
      }
      rows.appendChild(this.brush);
      append(tl, axis, rows);
      this.slot = el('div', 'details-slot');
      append(this.slot, el('p', 'muted placeholder', 'Click a span to see all it recorded.'));
      append(body, tl, this.slot);
      box.appendChild(body);
      this.wire();
      return box;
    }

    renderRow(row) {
      const r = el('div', 'row' + (row.failures ? ' has-failures' : ''));
      r.dataset.row = row.key;
      const label = el('div', 'row-label');
      const name = el('div', 'row-name', row.label);
      if (row.failures) name.appendChild(el('span', 'fail-count', row.failures + ' failed'));
      label.title = row.label + (row.sub ? '\n' + row.sub : '');
      append(label, name, row.sub ? el('div', 'row-sub', row.sub) : null);
      const track = el('div', 'track');
      const h = Math.max(ROW_MIN, row.lanes * LANE_H + 2 * ROW_PAD);
      track.style.height = h + 'px';
      // The height of the row while it is out of sight (.virtual).
      r.style.containIntrinsicSize = 'auto ' + (h + 1) + 'px';
      for (const v of row.spans) {
        const s = v.s;
        const e = el('div', 'span k-' + s.kind + (v.failed ? ' failed' : '') + (v.open ? ' open' : ''));
        e.dataset.spanId = String(s.id);
        e.setAttribute('role', 'button');
        e.tabIndex = -1;
        const text = describe(s);
        e.title = s.kind + ' #' + s.id + ': ' + text + '\n' + fmtDur(s.duration_ms) + (s.outcome ? ' · ' + s.outcome : '') + (v.open ? ' · still open when the trace ended' : '');
        e.setAttribute('aria-label', s.kind + ' ' + text + ', ' + fmtDur(s.duration_ms) + (s.outcome ? ', ' + s.outcome : ''));
        e.style.top = (ROW_PAD + v.lane * LANE_H) + 'px';
        append(e, el('span', 'label', text));
        v.el = e;
        track.appendChild(e);
      }
      row.el = r;
      append(r, label, track);
      return r;
    }

    // ------------------------------------------------------------ layout
    layout() {
      const t = performance.now();
      const [v0, v1] = this.view;
      const w = v1 - v0;
      const tw = this.grid.clientWidth || this.trackWidth;
      this.trackWidth = tw;
      for (const v of this.spans) {
        const e = v.el;
        if (v.end < v0 || v.start > v1) {
          if (v.shown !== false) { e.style.display = 'none'; v.shown = false; }
          continue;
        }
        const l = (Math.max(v.start, v0) - v0) / w * 100;
        const r = (Math.min(v.end, v1) - v0) / w * 100;
        e.style.left = l + '%';
        e.style.width = (r - l) + '%';
        if (v.shown !== true) { e.style.display = ''; v.shown = true; }
        const narrow = (r - l) * tw / 100 < 44;
        if (narrow !== v.narrow) { e.classList.toggle('narrow', narrow); v.narrow = narrow; }
        const clip = (v.start < v0 ? 1 : 0) + (v.end > v1 ? 2 : 0);
        if (clip !== (v.clip || 0)) {
          e.classList.toggle('clip-l', (clip & 1) !== 0);
          e.classList.toggle('clip-r', (clip & 2) !== 0);
          v.clip = clip;
        }
      }
      this.drawAxis(tw);
      const whole = this.extent[1] - this.extent[0];
      this.rangeLabel.textContent = w >= whole * 0.999
        ? 'whole build: ' + fmtDur(whole)
        : fmtDur(v0) + ' – ' + fmtDur(v1) + ' (' + fmtDur(w) + ', ×' + (whole / w).toFixed(whole / w < 10 ? 1 : 0) + ')';
      api.timings.lastLayout = performance.now() - t;
    }

    drawAxis(tw) {
      const [v0, v1] = this.view;
      const w = v1 - v0;
      const want = Math.max(2, Math.floor(tw / 110));
      const raw = w / want;
      const p = Math.pow(10, Math.floor(Math.log10(raw)));
      const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) || 10 * p;
      const ticks = [];
      const lines = [];
      const maxT = Math.max(Math.abs(v0), Math.abs(v1));
      for (let i = Math.ceil(v0 / step); i * step <= v1 + step * 1e-9; i++) {
        const t = i * step;
        const x = (t - v0) / w * 100;
        if (x < 0 || x > 100.001) continue;
        const tick = el('div', 'tick', fmtTick(t, step, maxT));
        tick.style.left = x + '%';
        if (x > 96) tick.classList.add('end');
        ticks.push(tick);
        const line = el('div', 'gridline');
        line.style.left = x + '%';
        lines.push(line);
        if (ticks.length > 60) break;
      }
      this.axisTrack.replaceChildren(...ticks);
      this.grid.replaceChildren(...lines);
    }

    setView(a, b) {
      const [e0, e1] = this.extent;
      let w = Math.max(MIN_WINDOW_MS, Math.min(b - a, e1 - e0));
      if (a < e0) a = e0;
      if (a + w > e1) a = e1 - w;
      this.view = [a, a + w];
      this.layout();
    }
    zoomBy(factor, at) {
      const [v0, v1] = this.view;
      const c = at === undefined ? (v0 + v1) / 2 : at;
      this.setView(c - (c - v0) / factor, c + (v1 - c) / factor);
    }
    panBy(fraction) {
      const w = this.view[1] - this.view[0];
      this.setView(this.view[0] + fraction * w, this.view[1] + fraction * w);
    }
    reset() {
      this.setView(this.extent[0], this.extent[1]);
    }
    timeAt(clientX) {
      const r = this.grid.getBoundingClientRect();
      const f = Math.min(1, Math.max(0, (clientX - r.left) / r.width));
      return this.view[0] + f * (this.view[1] - this.view[0]);
    }
    // Makes a span visible in the window (keeps the zoom unless it is wider).
    reveal(v) {
      const [v0, v1] = this.view;
      if (v.end >= v0 && v.start <= v1) return;
      const w = Math.max(v1 - v0, (v.end - v.start) * 1.2);
      const c = (v.start + v.end) / 2;
      this.setView(c - w / 2, c + w / 2);
    }

    wire() {
      const tl = this.tl;
      let down = null;
      let dragged = false;
      const move = (e) => {
        if (!down) return;
        const r = this.grid.getBoundingClientRect();
        if (!dragged && Math.abs(e.clientX - down.x) < 5) return;
        dragged = true;
        const a = Math.max(r.left, Math.min(down.x, e.clientX)), b = Math.min(r.right, Math.max(down.x, e.clientX));
        this.brush.hidden = false;
        this.brush.style.left = 'calc(var(--label-w) + ' + (a - r.left) + 'px)';
        this.brush.style.width = (b - a) + 'px';
      };
      const up = (e) => {
        window.removeEventListener('mousemove', move);
        window.removeEventListener('mouseup', up);
        if (!down) return;
        const start = down;
        down = null;
        this.brush.hidden = true;
        if (dragged) {
          const a = this.timeAt(Math.min(start.x, e.clientX)), b = this.timeAt(Math.max(start.x, e.clientX));
          if (b > a) this.setView(a, b);
        }
      };
      tl.addEventListener('mousedown', (e) => {
        if (e.button !== 0) return;
        const r = this.grid.getBoundingClientRect();
        if (e.clientX < r.left || e.clientX > r.right) return;
        e.preventDefault(); // no text selection while dragging
        tl.focus({ preventScroll: true });
        down = { x: e.clientX };
        dragged = false;
        window.addEventListener('mousemove', move);
        window.addEventListener('mouseup', up);
      });
      this.rowsEl.addEventListener('click', (e) => {
        if (dragged) { dragged = false; return; }
        const target = e.target.closest('[data-span-id]');
        if (target) this.select(Number(target.dataset.spanId), false);
      });
      let pending = null;
      tl.addEventListener('wheel', (e) => {
        const pan = e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY);
        if (!(e.ctrlKey || e.metaKey) && !pan) return;
        e.preventDefault();
        const delta = e.deltaMode === 1 ? 30 : e.deltaMode === 2 ? 300 : 1;
        pending = pending || { zoom: 1, pan: 0, at: this.timeAt(e.clientX) };
        if (e.ctrlKey || e.metaKey) pending.zoom *= Math.exp(-e.deltaY * delta * 0.002);
        else pending.pan += (e.shiftKey && !e.deltaX ? e.deltaY : e.deltaX) * delta / Math.max(1, this.trackWidth);
        if (pending.frame) return;
        pending.frame = requestAnimationFrame(() => {
          const p = pending;
          pending = null;
          if (p.zoom !== 1) this.zoomBy(p.zoom, p.at);
          if (p.pan) this.panBy(p.pan);
        });
      }, { passive: false });
      tl.addEventListener('keydown', (e) => this.key(e));
    }

    key(e) {
      const sel = selection && selection.view === this ? selection.v : null;
      let next = null;
      switch (e.key) {
        case '+': case '=': this.zoomBy(2, sel ? (sel.start + sel.end) / 2 : undefined); break;
        case '-': case '_': this.zoomBy(0.5); break;
        case '0': this.reset(); break;
        case 'Escape': this.highlight(null); clearSelection(); this.tl.focus(); break;
        case 'ArrowRight': case 'ArrowLeft': {
          if (!sel) { next = this.rows[0] && this.rows[0].byStart[0]; break; }
          const list = sel.row.byStart;
          next = list[list.indexOf(sel) + (e.key === 'ArrowRight' ? 1 : -1)];
          break;
        }
        case 'ArrowDown': case 'ArrowUp': {
          if (!sel) { next = this.rows[0] && this.rows[0].byStart[0]; break; }
          const row = this.rows[this.rows.indexOf(sel.row) + (e.key === 'ArrowDown' ? 1 : -1)];
          if (row) next = row.byStart.reduce((best, v) => Math.abs(v.start - sel.start) < Math.abs(best.start - sel.start) ? v : best);
          break;
        }
        default: return;
      }
      e.preventDefault();
      if (next) this.select(next.s.id, true);
    }

    select(id, fromKeyboard) {
      const v = this.byId.get(id);
      if (!v) return false;
      if (selection && selection.v.el) {
        selection.v.el.classList.remove('sel');
        selection.v.el.removeAttribute('aria-pressed');
      }
      selection = { view: this, v };
      v.el.classList.add('sel');
      v.el.setAttribute('aria-pressed', 'true');
      this.reveal(v);
      if (fromKeyboard) {
        v.el.focus({ preventScroll: true });
        v.el.scrollIntoView({ block: 'nearest', inline: 'nearest' });
      }
      showDetails(this, v);
      return true;
    }

    highlight(index, scroll) {
      if (this.highlighted !== null && this.findingEls) {
        this.findingEls.get(this.highlighted).setAttribute('aria-pressed', 'false');
        this.findingEls.get(this.highlighted).classList.remove('active');
      }
      for (const v of this.spans) if (v.hl) { v.el.classList.remove('hl'); v.hl = false; }
      for (const row of this.rows) row.el.classList.remove('hl-row');
      this.highlighted = index;
      const f = index === null ? null : (this.build.findings || [])[index];
      this.tl.classList.toggle('has-hl', !!f);
      if (!f) return;
      const item = this.findingEls.get(index);
      item.setAttribute('aria-pressed', 'true');
      item.classList.add('active');
      let first = null;
      for (const id of f.spans || []) {
        const v = this.byId.get(id);
        if (!v) continue;
        v.el.classList.add('hl');
        v.hl = true;
        v.row.el.classList.add('hl-row');
        if (!first || v.start < first.start) first = v;
      }
      if (first && scroll) {
        // The earliest of them is shown in the timeline and in the details.
        this.select(first.s.id, false);
        first.el.scrollIntoView({ block: 'nearest', inline: 'nearest' });
      }
    }
  }

  // ---------------------------------------------------------------- details
  let selection = null;
  const details = document.getElementById('details');

  function clearSelection() {
    if (selection && selection.v.el) {
      selection.v.el.classList.remove('sel');
      selection.v.el.removeAttribute('aria-pressed');
    }
    if (selection) {
      const slot = selection.view.slot;
      slot.classList.remove('active');
    }
    selection = null;
    details.hidden = true;
  }

  function pairs(dl, entries) {
    for (const [k, value, extra] of entries) {
      const dd = el('dd', null, value);
      dd.dataset.key = k;
      if (extra) append(dd, ' ', extra);
      append(dl, el('dt', null, k), dd);
    }
    return dl;
  }

  function showDetails(view, v) {
    const s = v.s;
    details.replaceChildren();
    const head = el('div', 'details-head');
    const title = el('h3', null, s.kind + ' #' + s.id);
    append(head, title,
      s.outcome ? el('span', 'badge ' + (v.failed ? 'bad' : 'ok'), s.outcome) : null,
      button('close', '×', 'Close details (Esc)', () => { clearSelection(); view.tl.focus(); }));
    append(details, head, el('p', 'summary', describe(s)));
    const rel = (x) => (x >= 0 ? '+' : '') + fmtDur(x);
    const parent = s.parent === null || s.parent === undefined ? null : view.byId.get(s.parent);
    const fields = el('dl', 'fields');
    pairs(fields, [
      ['id', String(s.id)],
      ['kind', s.kind],
      ['role', s.role],
      ['host', s.host === null || s.host === undefined ? '—' : s.host],
      ['addr', s.addr === null || s.addr === undefined ? '—' : s.addr],
      ['port', s.port === null || s.port === undefined ? '—' : String(s.port)],
      ['outcome', s.outcome || '—'],
      ['start', rel(v.start), el('span', 'muted abs', String(s.start))],
      ['end', s.end ? rel(v.end) : 'still open when the trace ended', s.end ? el('span', 'muted abs', String(s.end)) : null],
      ['duration', s.duration_ms === null || s.duration_ms === undefined ? '—' : fmtDur(s.duration_ms) + ' (' + s.duration_ms + ' ms)'],
      ['pid', String(s.pid)],
      ['parent', parent ? '#' + s.parent + ' ' + parent.s.kind : (s.parent === null || s.parent === undefined ? '—' : '#' + s.parent),
        parent ? button('link', 'show', 'Show span #' + s.parent, () => view.select(s.parent, true)) : null],
    ]);
    details.appendChild(fields);
    const keys = Object.keys(s.attrs || {}).sort();
    append(details, el('h4', null, keys.length ? 'Attributes' : 'No attributes'));
    const attrs = el('dl', 'attrs');
    pairs(attrs, keys.map((k) => [k, fmtValue(s.attrs[k])]));
    details.appendChild(attrs);
    const children = view.spans.filter((c) => c.s.parent === s.id);
    if (children.length) {
      append(details, el('h4', null, 'Children'));
      const list = el('div', 'chips');
      for (const c of children.slice(0, 200)) {
        list.appendChild(button('chip' + (c.failed ? ' failed' : ''), c.s.kind + ' #' + c.s.id, describe(c.s), () => view.select(c.s.id, true)));
      }
      if (children.length > 200) list.appendChild(el('span', 'muted', '… ' + (children.length - 200) + ' more'));
      details.appendChild(list);
    }
    const findings = view.findingsOf.get(s.id) || [];
    if (findings.length) {
      append(details, el('h4', null, 'Findings'));
      const list = el('div', 'chips');
      for (const i of findings) {
        const f = view.build.findings[i];
        list.appendChild(button('chip sev-' + f.severity, f.kind, f.message, () => view.highlight(i, true)));
      }
      details.appendChild(list);
    }
    for (const other of api.builds) if (other !== view) other.slot.classList.remove('active');
    view.slot.classList.add('active');
    view.slot.appendChild(details);
    details.hidden = false;
  }

  // ---------------------------------------------------------------- page
  function fmtTick(t, step, maxT) {
    if (Math.abs(t) < step * 1e-6) return '0';
    if (maxT >= 120000 && step >= 1000) {
      const total = Math.round(t / 1000);
      const m = Math.floor(total / 60), s = total % 60;
      return m ? m + ' min' + (s ? ' ' + s + ' s' : '') : s + ' s';
    }
    let unit = 'µs', div = 0.001;
    if (maxT >= 1000) { unit = 's'; div = 1000; } else if (maxT >= 1) { unit = 'ms'; div = 1; }
    const decimals = Math.max(0, -Math.floor(Math.log10(step / div) + 1e-9));
    return (t / div).toFixed(Math.min(decimals, 9)) + ' ' + unit;
  }

  function renderPage() {
    const main = document.getElementById('builds');
    const builds = Array.isArray(data.builds) ? data.builds : [];
    const subtitle = document.getElementById('page-subtitle');
    if (!builds.length) {
      subtitle.textContent = 'no Go build';
      main.replaceChildren(el('p', 'empty', 'No Go build ran: no process executed the Go command while tracing.'));
      return;
    }
    subtitle.textContent = builds.length === 1 ? 'the network timeline of 1 Go build' : 'the network timelines of ' + builds.length + ' Go builds';
    document.title = 'gomod-trace · ' + (builds.length === 1 ? commandLine(builds[0].command) : builds.length + ' builds');
    const sections = [];
    let t = performance.now();
    for (let i = 0; i < builds.length; i++) api.builds.push(new BuildView(builds[i], i));
    api.timings.model = performance.now() - t;
    t = performance.now();
    for (const view of api.builds) sections.push(view.render());
    api.timings.dom = performance.now() - t;
    if (builds.length > 1) {
      const toc = document.getElementById('toc');
      toc.hidden = false;
      for (const view of api.builds) {
        const b = view.build;
        const c = view.countFindings();
        const label = commandLine(b.command) + ' · ' + (b.exit_code === null || b.exit_code === undefined ? 'running' : 'exit ' + b.exit_code)
          + (c.error ? ' · ' + c.error + ' error(s)' : '') + (c.warning ? ' · ' + c.warning + ' warning(s)' : '');
        toc.appendChild(button('toc-item' + (c.error || b.exit_code ? ' bad' : ''), label, 'Go to build ' + b.id,
          () => view.section.scrollIntoView({ block: 'start' })));
      }
    }
    t = performance.now();
    main.replaceChildren(...sections);
    for (const view of api.builds) view.layout();
    api.timings.layout = performance.now() - t;
    if (typeof ResizeObserver === 'function') {
      const ro = new ResizeObserver(() => {
        for (const view of api.builds) if (view.grid.clientWidth !== view.trackWidth) view.layout();
      });
      for (const view of api.builds) ro.observe(view.grid);
    }
    window.addEventListener('beforeprint', () => { for (const view of api.builds) view.reset(); });
  }

  const view = (i) => {
    const v = api.builds[i];
    if (!v) throw new Error('no build ' + i);
    return v;
  };
  api.view = (i) => ({ start: view(i).view[0], end: view(i).view[1], extent: view(i).extent.slice() });
  api.zoom = (i, a, b) => view(i).setView(a, b);
  api.zoomBy = (i, f) => view(i).zoomBy(f);
  api.reset = (i) => view(i).reset();
  api.select = (i, id) => view(i).select(id, true);
  api.highlight = (i, findingIndex) => view(i).highlight(findingIndex, true);

  renderPage();
  api.timings.render = performance.now() - t0;
  api.ready = true;
  requestAnimationFrame(() => requestAnimationFrame(() => { api.timings.firstFrame = performance.now(); }));
})();
