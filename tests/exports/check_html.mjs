// Checks gomod-trace's HTML export in a real headless Chromium (Debian's, driven
// by playwright-core) against the JSON timeline of the same build(s):
//
//   node check_html.mjs PAGE.html TIMELINE.json [SCREENSHOT.png]
//
// playwright-core is found through NODE_PATH (tests/src/viewers/html.rs sets it
// to the directory `cargo xtask setup` installs it in). Fails (exit 1, one line
// per problem) on any console error or warning, page error, or request other
// than the page itself; on a finding, span or header field of the JSON that the
// page does not show; when clicking a span does not show its details, clicking a
// finding does not highlight its spans, or zooming does not change the axis.
// Prints one summary line with the page's load and render times.
import { createRequire } from 'node:module';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);
let chromium;
try {
  ({ chromium } = require('playwright-core'));
} catch (e) {
  console.error(`check_html: playwright-core not found (NODE_PATH=${process.env.NODE_PATH || ''}); run \`cargo xtask setup\`: ${e.message}`);
  process.exit(2);
}

const [pageArg, jsonArg, shotArg] = process.argv.slice(2);
if (!pageArg || !jsonArg) {
  console.error('usage: node check_html.mjs PAGE.html TIMELINE.json [SCREENSHOT.png]');
  process.exit(2);
}
const timeline = JSON.parse(readFileSync(jsonArg, 'utf8'));
const pageUrl = pathToFileURL(resolve(pageArg)).href;
const problems = [];
const fail = (msg) => problems.push(msg);
const notes = [];
// Which spans to click first: requests, then handshakes, then the rest.
const PREFERRED = ['http', 'tls', 'connect', 'dns', 'transfer'];

let summary = [];
const profile = mkdtempSync(join(tmpdir(), 'check-html-'));
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1400, height: 900 },
    offline: true,
  });
  summary = await run(context);
} catch (e) {
  fail(`check aborted: ${e && e.stack ? e.stack.split('\n').slice(0, 4).join(' | ') : e}`);
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}

if (problems.length) {
  for (const p of problems) console.error(`check_html: FAIL ${p}`);
  console.error(`check_html: FAILED ${pageArg}: ${problems.length} problem(s)`);
  process.exit(1);
}
for (const n of notes) console.log(`check_html: ${n}`);
for (const line of summary) console.log(line);

async function run(context) {
  const requests = [];
  // Anything but the page itself is recorded and refused (file:// requests are
  // not routed by Chromium, so every request is also recorded as it is made).
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url === pageUrl) return route.continue();
    requests.push(url);
    return route.abort('blockedbyclient');
  });
  context.on('request', (r) => { if (r.url() !== pageUrl) requests.push(r.url()); });
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(20000);
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') fail(`console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => fail(`page error: ${e.message}`));
  page.on('requestfailed', (r) => { if (r.url() !== pageUrl) fail(`request failed: ${r.url()}`); });

  const t0 = Date.now();
  await page.goto(pageUrl, { waitUntil: 'load' });
  await page.waitForFunction(() => window.gomodTrace && window.gomodTrace.timings.firstFrame !== undefined, null, { timeout: 20000 });
  const wall = Date.now() - t0;
  const timing = await page.evaluate(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const t = window.gomodTrace.timings;
    const paint = performance.getEntriesByName('first-contentful-paint')[0];
    return { dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd, render: t.render, ready: Math.max(t.firstFrame, paint ? paint.startTime : 0), layout: t.lastLayout };
  });

  // Nothing from the data became markup: the page's own two scripts, no
  // embedded or linked resource, no inline event handler, its own title.
  const dom = await page.evaluate(() => ({
    scripts: document.scripts.length,
    resources: document.querySelectorAll('img, iframe, object, embed, link, video, audio, source, base, form, meta[http-equiv="refresh"]').length,
    handlers: [...document.querySelectorAll('*')].filter((e) => [...e.attributes].some((a) => /^on/i.test(a.name))).length,
    title: document.title,
  }));
  if (dom.scripts !== 2) fail(`the page has ${dom.scripts} script elements, not 2 (its data and its code)`);
  if (dom.resources) fail(`the page has ${dom.resources} element(s) that load or submit something`);
  if (dom.handlers) fail(`${dom.handlers} element(s) have inline event handlers`);
  if (!dom.title.startsWith('gomod-trace')) fail(`the page's title is ${JSON.stringify(dom.title)}`);

  const builds = timeline.builds || [];
  let spanCount = 0;
  let findingCount = 0;
  const sectionCount = await page.locator('section.build').count();
  if (sectionCount !== builds.length) fail(`${builds.length} build(s) in the JSON, ${sectionCount} section(s) on the page`);
  if (!builds.length) {
    const text = await page.locator('main').innerText();
    if (!/No Go build/.test(text)) fail('an empty timeline does not say that no build ran');
  }

  let zoomMs = null;
  for (let i = 0; i < builds.length; i++) {
    const b = builds[i];
    spanCount += b.spans.length;
    findingCount += b.findings.length;
    const sec = page.locator(`section.build[data-build-index="${i}"]`);
    if (await sec.count() !== 1) { fail(`build ${i}: no section`); continue; }
    const where = `build ${b.id}`;
    if (await sec.getAttribute('data-build-id') !== b.id) fail(`${where}: section has data-build-id ${await sec.getAttribute('data-build-id')}`);
    await checkHeader(sec, b, where);
    await checkFindingsShown(sec, b, where);
    await checkSpansPresent(sec, b, where);
    await clickSpan(page, sec, b, i, where);
    const z = await checkZoom(page, sec, b, i, where);
    if (zoomMs === null) zoomMs = z;
    if (b.spans.length >= 1000) await clickSpan(page, sec, b, i, where + ' (zoomed in)', true);
    await clickFinding(page, sec, b, where);
    await checkKeyboard(page, sec, b, i, where);
  }

  if (shotArg) {
    // The first finding of the first build that has one, highlighted.
    const first = page.locator('[data-finding-kind]').first();
    if (await first.count()) {
      if (await first.getAttribute('aria-pressed') !== 'true') await first.click();
      await page.evaluate(() => window.scrollTo(0, 0));
    }
    await page.screenshot({ path: shotArg, fullPage: true });
    notes.push(`screenshot: ${shotArg}`);
  }

  const unique = [...new Set(requests)];
  if (unique.length) fail(`the page made ${unique.length} request(s) besides itself: ${unique.slice(0, 5).join(', ')}`);

  return [`check_html: timings ready_ms=${timing.ready.toFixed(1)} render_ms=${timing.render.toFixed(1)} load_ms=${timing.load.toFixed(1)} zoom_ms=${zoomMs === null ? 'NaN' : zoomMs.toFixed(2)}`,
    `check_html: OK ${pageArg}: ${builds.length} build(s), ${spanCount} spans, ${findingCount} findings; `
    + `load ${timing.load.toFixed(0)} ms (DOMContentLoaded ${timing.dcl.toFixed(0)} ms), script render ${timing.render.toFixed(1)} ms, `
    + `ready (first paint) ${timing.ready.toFixed(0)} ms, zoom relayout ${zoomMs === null ? '-' : zoomMs.toFixed(1) + ' ms'}, wall ${wall} ms; `
    + `requests besides the page: ${unique.length}`];
}

async function checkHeader(sec, b, where) {
  const head = sec.locator('.build-head');
  const text = await head.innerText();
  const compact = (s) => s.replace(/\s+/g, ' ');
  for (const word of b.command) {
    if (!compact(text).includes(compact(String(word)))) fail(`${where}: the header does not show the command's ${JSON.stringify(word)}`);
  }
  if (!text.includes(b.id)) fail(`${where}: the header does not show the build id`);
  if (b.exit_code !== null && b.exit_code !== undefined && !text.includes(`exit ${b.exit_code}`)) fail(`${where}: the header does not show "exit ${b.exit_code}"`);
  if (b.complete === text.includes('INCOMPLETE')) fail(`${where}: complete=${b.complete} but the header ${b.complete ? 'says' : 'does not say'} INCOMPLETE`);
  for (const n of b.notes || []) if (!compact(text).includes(compact(n))) fail(`${where}: note ${JSON.stringify(n)} not shown`);
  for (const key of ['GOPROXY', 'GOSUMDB', 'GOPRIVATE', 'GONOPROXY', 'GONOSUMDB', 'GOFLAGS']) {
    const c = (b.config || {})[key];
    if (c && !(text.includes(key) && text.includes(c.value))) fail(`${where}: the header does not show ${key}=${c.value}`);
  }
}

async function checkFindingsShown(sec, b, where) {
  const shown = await sec.locator('[data-finding-kind]').evaluateAll((els) => els.map((e) => ({
    kind: e.dataset.findingKind, text: e.textContent.replace(/\s+/g, ' '),
    sev: e.className, top: e.getBoundingClientRect().top,
  })));
  if (shown.length !== b.findings.length) fail(`${where}: ${b.findings.length} finding(s) in the JSON, ${shown.length} on the page`);
  const used = new Set();
  const norm = (s) => String(s).replace(/\s+/g, ' ');
  for (const f of b.findings) {
    const at = shown.findIndex((s, k) => !used.has(k) && s.kind === f.kind && s.text.includes(norm(f.message)) && s.text.includes(norm(f.remedy)));
    if (at < 0) { fail(`${where}: finding ${f.kind} (${f.message.slice(0, 80)}) is not shown with its message and remedy`); continue; }
    used.add(at);
  }
  // Sorted by severity: error, warning, info.
  const rank = { error: 0, warning: 1, info: 2 };
  const order = shown.map((s) => rank[(/sev-(\w+)/.exec(s.sev) || [])[1]]);
  for (let k = 1; k < order.length; k++) if (order[k] < order[k - 1]) fail(`${where}: findings are not sorted by severity`);
}

async function checkSpansPresent(sec, b, where) {
  const info = await sec.evaluate((s) => [...s.querySelectorAll('[data-span-id]')].map((e) => {
    const r = e.getBoundingClientRect();
    return [Number(e.dataset.spanId), e.classList.contains('failed'), r.width > 0 && r.height > 0];
  }));
  const seen = new Map();
  for (const [id, failed, visible] of info) {
    if (seen.has(id)) fail(`${where}: span ${id} appears twice`);
    seen.set(id, { failed, visible });
  }
  if (info.length !== b.spans.length) fail(`${where}: ${b.spans.length} span(s) in the JSON, ${info.length} on the page`);
  let missing = 0, hidden = 0, colour = 0;
  for (const s of b.spans) {
    const e = seen.get(s.id);
    if (!e) { if (missing++ < 5) fail(`${where}: span ${s.id} (${s.kind}) is not on the page`); continue; }
    if (!e.visible && hidden++ < 5) fail(`${where}: span ${s.id} is not drawn at the whole-build zoom`);
    const failed = s.outcome !== null && s.outcome !== undefined && s.outcome !== 'ok';
    if (e.failed !== failed && colour++ < 5) fail(`${where}: span ${s.id} outcome ${s.outcome} but ${e.failed ? '' : 'not '}marked failed`);
  }
}

// The details panel as {fields: {name: text}, attrs: {name: text}}.
async function readDetails(page) {
  return page.evaluate(() => {
    const d = document.getElementById('details');
    if (!d || d.hidden) return null;
    const read = (dl) => {
      const out = {};
      if (!dl) return out;
      for (const dt of dl.querySelectorAll('dt')) out[dt.textContent] = dt.nextElementSibling ? dt.nextElementSibling.textContent : '';
      return out;
    };
    return { fields: read(d.querySelector('dl.fields')), attrs: read(d.querySelector('dl.attrs')) };
  });
}

function attrText(v) {
  if (Array.isArray(v)) return v.length ? String(v[0]) : null;
  if (v === null || typeof v === 'object') return null;
  return String(v);
}

// Where a real click would hit span `id` (scrolled into view): its centre
// (left part when wide), if nothing covers it there.
async function hitPoint(sec, id) {
  return sec.evaluate((s, id) => {
    const e = s.querySelector(`[data-span-id="${id}"]`);
    if (!e || getComputedStyle(e).display === 'none') return null;
    e.scrollIntoView({ block: 'center' });
    const r = e.getBoundingClientRect();
    const x = r.left + Math.min(r.width / 2, 40), y = r.top + r.height / 2;
    const at = document.elementFromPoint(x, y);
    return { x, y, hit: !!at && at.closest('[data-span-id]') === e };
  }, id);
}

// Clicks (a real mouse click) a span that has a host and an attribute, and
// checks the details panel shows them. When every such span is too small to be
// hit at this zoom, zooms in on one by dragging across it, as a person would.
// With keepZoom, only a span drawn in the current (zoomed) window, other than
// the one selected, and the zoom is never reset.
async function clickSpan(page, sec, b, i, where, keepZoom) {
  const drawn = new Set(await sec.evaluate((s) => [...s.querySelectorAll('[data-span-id]')]
    .filter((e) => getComputedStyle(e).display !== 'none' && !e.classList.contains('sel')).map((e) => Number(e.dataset.spanId))));
  const candidates = b.spans
    .filter((s) => s.host && Object.values(s.attrs || {}).some((v) => attrText(v) !== null))
    .filter((s) => !keepZoom || drawn.has(s.id))
    .sort((x, y) => (drawn.has(y.id) - drawn.has(x.id)) || PREFERRED.indexOf(x.kind) - PREFERRED.indexOf(y.kind));
  if (!candidates.length) {
    if (keepZoom) fail(`${where}: no span with a host and attributes is drawn in the zoomed window`);
    else notes.push(`${where}: no span with a host and attributes to click`);
    return;
  }
  let target = null, point = null;
  for (const s of candidates.slice(0, 40)) {
    const p = await hitPoint(sec, s.id);
    if (p && p.hit) { target = s; point = p; break; }
  }
  let drags = 0;
  if (!target) {
    target = candidates[0];
    point = await hitPoint(sec, target.id);
    if (!point && !keepZoom) { await sec.locator('button.reset').click(); point = await hitPoint(sec, target.id); }
    while (point && !point.hit && drags < 8) {
      const g = await sec.locator('.grid').boundingBox();
      const x0 = Math.max(g.x, point.x - 6), x1 = Math.min(g.x + g.width - 1, x0 + 12);
      await page.mouse.move(x0, point.y);
      await page.mouse.down();
      await page.mouse.move(x1, point.y, { steps: 4 });
      await page.mouse.up();
      drags++;
      point = await hitPoint(sec, target.id);
    }
    if (!point || !point.hit) { fail(`${where}: span ${target.id} could not be clicked, even after zooming in ${drags} time(s)`); return; }
  }
  const s = target;
  const view = () => page.evaluate((k) => { const v = window.gomodTrace.view(k); return [v.start, v.end]; }, i);
  const before = await view();
  await page.mouse.click(point.x, point.y);
  const d = await readDetails(page);
  if (!d) { fail(`${where}: clicking span ${s.id} shows no #details`); return; }
  const attrKey = Object.keys(s.attrs).sort().find((k) => attrText(s.attrs[k]) !== null);
  const want = { id: String(s.id), kind: s.kind, host: s.host };
  for (const [k, v] of Object.entries(want)) {
    if (d.fields[k] !== v) fail(`${where}: after clicking span ${s.id}, #details shows ${k}=${JSON.stringify(d.fields[k])}, not ${JSON.stringify(v)}`);
  }
  const value = attrText(s.attrs[attrKey]);
  if (!(attrKey in d.attrs) || !d.attrs[attrKey].includes(value)) {
    fail(`${where}: after clicking span ${s.id}, #details shows attr ${attrKey}=${JSON.stringify(d.attrs[attrKey])}, not ${JSON.stringify(value)}`);
  }
  if (!await sec.locator(`[data-span-id="${s.id}"]`).evaluate((e) => e.classList.contains('sel'))) fail(`${where}: span ${s.id} is not marked selected after the click`);
  if (String(await view()) !== String(before)) fail(`${where}: clicking a span changed the zoom`);
  notes.push(`${where}: clicked span ${s.id} (${s.kind} ${s.host})${drags ? ` after zooming in by ${drags} drag(s)` : ''}, details show ${attrKey}=${value}`);
}

async function ticks(sec) {
  return sec.locator('[data-axis] .tick').evaluateAll((els) => els.map((e) => e.textContent).join(' | '));
}

// Zooms with the + button, Ctrl+wheel and a drag across the track; each must
// change the axis and the view; Reset restores the whole build. Returns the
// time of one relayout (ms).
async function checkZoom(page, sec, b, i, where) {
  const view = () => page.evaluate((k) => window.gomodTrace.view(k), i);
  await sec.locator('button.reset').click();
  const whole = await view();
  if (whole.start !== whole.extent[0] || whole.end !== whole.extent[1]) fail(`${where}: Reset does not show the whole build`);
  const initial = await ticks(sec);
  if (!initial) fail(`${where}: the axis has no ticks`);
  await sec.locator('button.zoom-in').click();
  const afterButton = await ticks(sec);
  const v1 = await view();
  if (afterButton === initial) fail(`${where}: the + button did not change the axis (${initial})`);
  if (!(v1.end - v1.start < (whole.end - whole.start) * 0.6)) fail(`${where}: the + button did not zoom in`);
  await sec.locator('button.reset').click();
  if (await ticks(sec) !== initial) fail(`${where}: Reset did not restore the axis`);

  // Ctrl+wheel over the axis.
  const axis = sec.locator('[data-axis]');
  await axis.scrollIntoViewIfNeeded();
  let a = await axis.boundingBox();
  await page.mouse.move(a.x + a.width * 0.5, a.y + a.height / 2);
  await page.keyboard.down('Control');
  await page.mouse.wheel(0, -400);
  await page.keyboard.up('Control');
  await page.waitForFunction(([k, w]) => { const v = window.gomodTrace.view(k); return v.end - v.start < w; }, [i, (whole.end - whole.start) * 0.9], { timeout: 3000 })
    .catch(() => fail(`${where}: Ctrl+wheel did not zoom in`));
  if (await ticks(sec) === initial) fail(`${where}: Ctrl+wheel did not change the axis`);
  await sec.locator('button.reset').click();

  // Drag-select from 20% to 45% of the track, along the axis.
  await axis.scrollIntoViewIfNeeded();
  a = await axis.boundingBox();
  const g = await sec.locator('.grid').boundingBox();
  const y = a.y + a.height / 2;
  const x0 = g.x + g.width * 0.2, x1 = g.x + g.width * 0.45;
  const before = await readDetails(page);
  await page.mouse.move(x0, y);
  await page.mouse.down();
  await page.mouse.move(x1, y, { steps: 6 });
  await page.mouse.up();
  const v2 = await view();
  const span = whole.end - whole.start;
  const expect0 = whole.start + span * 0.2, expect1 = whole.start + span * 0.45;
  if (Math.abs(v2.start - expect0) > span * 0.02 || Math.abs(v2.end - expect1) > span * 0.02) {
    fail(`${where}: dragging across 20%–45% of the track zoomed to ${v2.start.toFixed(3)}–${v2.end.toFixed(3)} ms, not ≈${expect0.toFixed(3)}–${expect1.toFixed(3)}`);
  }
  if (await ticks(sec) === initial) fail(`${where}: drag-select did not change the axis`);
  // A drag is not a click: the details panel did not change.
  if (JSON.stringify(await readDetails(page)) !== JSON.stringify(before)) fail(`${where}: a drag changed the selected span`);

  // One relayout, timed to the next frame.
  const ms = await page.evaluate((k) => new Promise((done) => {
    const t = performance.now();
    window.gomodTrace.zoomBy(k, 1.5);
    requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now() - t)));
  }), i);
  if (b.spans.length < 1000) {
    await sec.locator('button.reset').click();
    if (await ticks(sec) !== initial) fail(`${where}: Reset after drag did not restore the axis`);
  }
  return ms;
}

// Clicks the first finding with spans; they, and only they, must be highlighted,
// and one of them visible.
async function clickFinding(page, sec, b, where) {
  const items = sec.locator('[data-finding-kind]');
  const n = await items.count();
  for (let k = 0; k < n; k++) {
    const item = items.nth(k);
    const index = Number(await item.getAttribute('data-finding-index'));
    const f = b.findings[index];
    if (!f) { fail(`${where}: finding element ${k} has no finding ${index} in the JSON`); continue; }
    if (!f.spans.length) continue;
    await sec.locator('button.reset').click();
    await page.evaluate(() => window.scrollTo(0, 0));
    await item.click();
    if (await item.getAttribute('aria-pressed') !== 'true') fail(`${where}: finding ${f.kind} is not pressed after a click`);
    const state = await sec.evaluate((s) => {
      const tl = s.querySelector('.tl');
      const tr = tl.getBoundingClientRect();
      return [...s.querySelectorAll('[data-span-id]')].map((e) => {
        const r = e.getBoundingClientRect();
        const inView = getComputedStyle(e).display !== 'none' && r.bottom > tr.top && r.top < tr.bottom
          && r.bottom > 0 && r.top < window.innerHeight;
        return [Number(e.dataset.spanId), e.classList.contains('hl'), inView];
      });
    });
    const want = new Set(f.spans);
    let wrong = 0, visible = 0;
    for (const [id, hl, inView] of state) {
      if (hl !== want.has(id) && wrong++ < 5) fail(`${where}: after clicking ${f.kind}, span ${id} is ${hl ? '' : 'not '}highlighted`);
      if (hl && inView) visible++;
    }
    if (!visible) fail(`${where}: after clicking ${f.kind}, none of its spans is scrolled into view`);
    const d = await readDetails(page);
    if (!d || !want.has(Number(d.fields.id))) fail(`${where}: after clicking ${f.kind}, #details shows span ${d && d.fields.id}, not one of its spans`);
    // A second click clears the highlight.
    await item.click();
    const left = await sec.locator('[data-span-id].hl').count();
    if (left) fail(`${where}: a second click on ${f.kind} left ${left} span(s) highlighted`);
    notes.push(`${where}: clicking ${f.kind} highlighted its ${want.size} span(s)`);
    return;
  }
}

// Without a mouse: Enter/Space on a finding toggles its highlight; in the
// focused timeline the arrow keys select spans (shown in #details, focused),
// + zooms, 0 resets, Escape clears.
async function checkKeyboard(page, sec, b, i, where) {
  const item = sec.locator('[data-finding-kind]').first();
  if (await item.count()) {
    await item.focus();
    await page.keyboard.press('Enter');
    const on = await item.getAttribute('aria-pressed');
    await page.keyboard.press(' ');
    const off = await item.getAttribute('aria-pressed');
    if (on !== 'true' || off !== 'false') fail(`${where}: Enter/Space on a finding did not toggle it (${on}, ${off})`);
  }
  await sec.locator('.tl').focus();
  await page.keyboard.press('Escape');
  const current = async () => page.evaluate(() => {
    const d = document.getElementById('details');
    const dd = d && !d.hidden && d.querySelector('dl.fields dd[data-key="id"]');
    const a = document.activeElement;
    return { shown: dd ? dd.textContent : null, focused: a && a.dataset ? a.dataset.spanId || null : null };
  });
  if ((await current()).shown !== null) fail(`${where}: Escape did not close the details`);
  const seen = [];
  for (const key of ['ArrowRight', 'ArrowRight', 'ArrowDown', 'ArrowLeft']) {
    await page.keyboard.press(key);
    const c = await current();
    if (c.shown === null || c.shown !== c.focused) fail(`${where}: after ${key} the details show span ${c.shown}, focus is on ${c.focused}`);
    else if (!b.spans.some((s) => String(s.id) === c.shown)) fail(`${where}: ${key} selected span ${c.shown}, not in the build`);
    seen.push(c.shown);
  }
  const rows = await sec.locator('.row').count();
  if (b.spans.length > 2 && rows > 1 && new Set(seen).size < 2) fail(`${where}: the arrow keys did not move the selection (${seen.join(', ')})`);
  const view = () => page.evaluate((k) => { const v = window.gomodTrace.view(k); return v.end - v.start; }, i);
  await page.keyboard.press('0');
  const whole = await view();
  await page.keyboard.press('+');
  const zoomed = await view();
  await page.keyboard.press('0');
  if (!(zoomed < whole * 0.75) || await view() !== whole) fail(`${where}: + and 0 did not zoom in and reset (${whole}, ${zoomed})`);
  await page.keyboard.press('Escape');
  notes.push(`${where}: keyboard: findings toggle with Enter/Space, arrows selected spans ${seen.join(' → ')}, + and 0 zoom`);
}
