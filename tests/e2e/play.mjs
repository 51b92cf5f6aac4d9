// Browser end-to-end test of the wmserve web client against a running server.
//
//   node play.mjs SERVER_URL ARTIFACT_DIR
//
// Drives Debian's Chromium (headless; $CHROMIUM overrides /usr/bin/chromium) through the page as a
// player would: load, pick the default scene, join, watch frames arrive, hold a key until the
// server acknowledges it, check the stats overlay, re-check the layout at 200% zoom, force a
// connection drop and watch the page reconnect and rejoin. Starts nothing itself (tests/e2e/run.sh
// starts the server). Prints one line per check and "N passed, N failed"; exits 0 only if all pass.
// Screenshots: ARTIFACT_DIR/e2e-100.png, e2e-200.png, e2e-reconnect.png.

import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [url, outDir] = process.argv.slice(2);
if (!url || !outDir) {
  console.error('usage: node play.mjs SERVER_URL ARTIFACT_DIR');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });

let passed = 0;
let failed = 0;
function check(ok, what, detail = '') {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}${detail ? ` — ${detail}` : ''}`);
  return ok;
}

const stats = (page) => page.evaluate(() => window.wmStats);
// Polls fn(stats) until it returns true; returns the last snapshot (or null on timeout).
async function waitStats(page, fn, timeoutMs) {
  const end = Date.now() + timeoutMs;
  let s = null;
  while (Date.now() < end) {
    s = await stats(page);
    if (s && fn(s)) return s;
    await page.waitForTimeout(50);
  }
  return null;
}

// Everything that sticks out to the right of the viewport, and the page's horizontal overflow.
const layoutProblems = (page) => page.evaluate(() => {
  const vw = document.documentElement.clientWidth;
  const out = [];
  if (document.documentElement.scrollWidth > vw + 1) out.push(`scrollWidth ${document.documentElement.scrollWidth} > ${vw}`);
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    if (r.right > vw + 1 || r.left < -1) out.push(`${el.tagName.toLowerCase()}#${el.id || ''}.${el.className || ''} [${Math.round(r.left)}, ${Math.round(r.right)}]`);
  }
  return out.slice(0, 8);
});

const visible = (page, sel) => page.evaluate((s) => {
  const el = document.querySelector(s);
  if (!el) return false;
  const r = el.getBoundingClientRect();
  const cs = getComputedStyle(el);
  return r.width > 0 && r.height > 0 && cs.visibility !== 'hidden' && cs.display !== 'none' &&
    r.right <= document.documentElement.clientWidth + 1;
}, sel);

// Distinct sampled colours on the canvas: a frame was really painted, not a black rectangle.
const canvasColours = (page) => page.evaluate(() => {
  const c = document.getElementById('view');
  const g = c.getContext('2d');
  const d = g.getImageData(0, 0, c.width, c.height).data;
  const seen = new Set();
  const step = Math.max(4, Math.floor(d.length / 4 / 2000)) * 4;
  for (let i = 0; i < d.length; i += step) seen.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
  return seen.size;
});

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});

const pageErrors = [];
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(`console: ${m.text()}`); });

  // 1. Load and welcome.
  const resp = await page.goto(url, { waitUntil: 'load' });
  check(resp && resp.ok(), 'page loads', resp ? `HTTP ${resp.status()}` : 'no response');
  const welcomed = await page.waitForSelector('#join:not([disabled])', { timeout: 15000 }).then(() => true, () => false);
  const serverName = await page.textContent('#server-name');
  check(welcomed && serverName.trim().length > 0, 'welcome received (server name shown, Play enabled)', serverName.trim());
  const variants = await page.$$eval('#variant option', (os) => os.map((o) => o.value));
  check(variants.length > 0, 'variants listed from welcome', variants.join(', '));

  // 2. The default scene (the first offered, preselected) and join.
  const scenes = await page.$$eval('.scene', (bs) => bs.map((b) => b.dataset.scene));
  if (scenes.length) {
    await page.click('.scene');
    const picked = await page.getAttribute('.scene', 'aria-checked');
    check(picked === 'true', 'default scene chosen', scenes[0]);
  } else {
    check(true, 'no scenes offered; joining with the server default');
  }
  await page.click('#join');
  const joined = await waitStats(page, (s) => s.phase === 'playing', 20000);
  check(!!joined, 'joined', joined ? `variant ${joined.variant}` : `phase ${(await stats(page)).phase}`);

  // 3. Frames appear on the canvas.
  const tFrames = Date.now();
  const ten = await waitStats(page, (s) => s.framesDrawn >= 10, 30000);
  check(!!ten, 'at least 10 frames drawn', ten ? `${ten.framesDrawn} in ${Date.now() - tFrames} ms` : `${(await stats(page)).framesDrawn} drawn`);
  const colours = await canvasColours(page);
  check(colours > 8, 'canvas shows a picture', `${colours} distinct sampled colours`);
  check(await page.isHidden('#placeholder'), 'placeholder hidden once frames arrive');

  // 4. Legend and a held key acknowledged by the server.
  const rows = await page.$$eval('#legend tr[data-codes]', (rs) => rs.map((r) => ({ name: r.dataset.name, codes: r.dataset.codes.split(' ') })));
  check(rows.length > 0, 'key legend shown for the variant', rows.map((r) => `${r.codes[0]}=${r.name}`).join(' '));
  if (rows.length) {
    const key = rows[0].codes[0];
    const before = await stats(page);
    await page.focus('#view');
    await page.keyboard.down(key);
    const held = await page.$eval(`#legend tr[data-name="${rows[0].name}"]`, (r) => r.classList.contains('held'));
    check(held, `legend marks ${rows[0].name} as held`);
    const acked = await waitStats(page, (s) => s.sentSeq > before.sentSeq && s.ackedSeq > before.sentSeq, 15000);
    check(!!acked, `held ${key} acknowledged by the server (frame.input_seq advanced)`,
      acked ? `sent ${acked.sentSeq}, acked ${acked.ackedSeq} (was ${before.ackedSeq})` : JSON.stringify(await stats(page)));
    const lat = acked ? acked.latencyLastMs : null;
    check(lat != null && lat > 0 && lat < 10000, 'input-to-frame latency measured', `${lat == null ? '–' : lat.toFixed(1)} ms`);
    const overlayAck = await page.textContent('#overlay');
    await page.waitForTimeout(300);
    const m = /acked (\d+)/.exec(await page.textContent('#overlay'));
    check(m && Number(m[1]) > before.ackedSeq, 'overlay shows the acknowledged input seq', m ? `acked ${m[1]}` : overlayAck);
    await page.keyboard.up(key);
  }

  // 5. The stats overlay updates.
  const o1 = await page.textContent('#overlay');
  await page.waitForTimeout(1200);
  let o2 = await page.textContent('#overlay');
  check(o1 !== o2, 'stats overlay text updates');
  // fps counts frames drawn in the last second; a slow (e.g. sanitizer) build delivers blocks in
  // bursts, so look for a non-zero reading over a few seconds.
  let fps = 0;
  for (let i = 0; i < 40 && !(fps > 0); i++) {
    o2 = await page.textContent('#overlay');
    fps = Number((/^fps\s+(\d+)/m.exec(o2) || [])[1]);
    if (!(fps > 0)) await page.waitForTimeout(125);
  }
  check(fps > 0, 'overlay fps > 0', `fps ${fps}`);
  const s5 = await stats(page);
  check(s5.rttMs != null && s5.rttMs >= 0, 'round trip measured (ping/pong)', `${s5.rttMs?.toFixed(2)} ms`);
  check(s5.blockMs != null, 'server block time shown', `${s5.blockMs} ms`);
  check(/dropped\s+server \d+/.test(o2), 'overlay shows server dropped frames (stats message)', (/^dropped.*$/m.exec(o2) || [''])[0]);
  console.log(o2.split('\n').map((l) => `     | ${l}`).join('\n'));

  // 6. Layout and screenshot at 100%.
  check((await layoutProblems(page)).length === 0, 'no horizontal overflow at 100%', (await layoutProblems(page)).join('; '));
  const shot100 = path.join(outDir, 'e2e-100.png');
  await page.screenshot({ path: shot100 });
  check(true, 'screenshot at 100%', shot100);

  // 7. Zooming a running session to 200%: the CSS viewport halves and each CSS pixel becomes two
  // device pixels, as browser zoom does on a 1280×800 window. (Layout only: Playwright's
  // screenshots undo this override, so the 200% screenshot comes from a 200% context below.)
  const cdp = await context.newCDPSession(page);
  await cdp.send('Emulation.setDeviceMetricsOverride', { width: 640, height: 400, deviceScaleFactor: 2, mobile: false });
  await page.waitForTimeout(500);
  const zoom = await page.evaluate(() => ({ dpr: devicePixelRatio, vw: document.documentElement.clientWidth }));
  check(zoom.dpr === 2 && zoom.vw <= 640, 'live zoom to 200% applied', `dpr ${zoom.dpr}, viewport ${zoom.vw} CSS px`);
  check(await visible(page, '#view'), 'canvas visible after zooming to 200%');
  check(await visible(page, '#legend'), 'key legend visible after zooming to 200%');
  const problems = await layoutProblems(page);
  check(problems.length === 0, 'nothing overflows horizontally after zooming to 200%', problems.join('; '));
  const crisp = await page.evaluate(() => {
    const c = document.getElementById('view');
    const r = c.getBoundingClientRect();
    return { backing: c.width, device: Math.round(r.width * devicePixelRatio) };
  });
  check(Math.abs(crisp.backing - crisp.device) <= 2, 'canvas backing store follows device pixels after zooming',
    `${crisp.backing} px for ${crisp.device} device px`);
  const d0 = (await stats(page)).framesDrawn;
  const more = await waitStats(page, (s) => s.framesDrawn >= d0 + 5, 10000);
  check(!!more, 'frames keep coming at 200%');
  await cdp.send('Emulation.clearDeviceMetricsOverride');

  // 8. Leave ends the session and frees the slot.
  await page.click('#leave');
  const left = await waitStats(page, (s) => s.phase === 'ready', 8000);
  check(!!left && await page.isVisible('#setup'), 'leave returns to the start form');
  await context.close();

  // 9. A player at 200% zoom (a 1280×800 window zoomed: 640×400 CSS px, 2 device px each) whose
  // websocket goes through a route the test can cut, to check reconnection.
  const ctx2 = await browser.newContext({ viewport: { width: 640, height: 400 }, deviceScaleFactor: 2 });
  let route = null;
  await ctx2.routeWebSocket(/\/ws$/, (ws) => {
    route = ws;
    ws.connectToServer();
  });
  const p2 = await ctx2.newPage();
  p2.on('pageerror', (e) => pageErrors.push(e.message));
  p2.on('console', (m) => { if (m.type() === 'error') pageErrors.push(`console: ${m.text()}`); });
  await p2.goto(url);
  await p2.waitForSelector('#join:not([disabled])', { timeout: 15000 });
  const formProblems = await layoutProblems(p2);
  check(formProblems.length === 0, 'start form fits at 200%', formProblems.join('; '));
  await p2.click('#join');
  const first = await waitStats(p2, (s) => s.phase === 'playing' && s.framesDrawn >= 5, 30000);
  check(!!first, 'player at 200% joins and gets frames (through the routed websocket)');
  check(await visible(p2, '#view'), 'canvas visible at 200%');
  check(await visible(p2, '#legend'), 'key legend visible at 200%');
  const p2Problems = await layoutProblems(p2);
  check(p2Problems.length === 0, 'nothing overflows horizontally at 200%', p2Problems.join('; '));
  const crisp2 = await p2.evaluate(() => {
    const c = document.getElementById('view');
    return { backing: c.width, device: Math.round(c.getBoundingClientRect().width * devicePixelRatio) };
  });
  check(Math.abs(crisp2.backing - crisp2.device) <= 2, 'canvas drawn at device resolution at 200%',
    `${crisp2.backing} px for ${crisp2.device} device px`);
  const shot200 = path.join(outDir, 'e2e-200.png');
  await p2.screenshot({ path: shot200, fullPage: true });
  check(true, 'screenshot at 200% (whole page)', shot200);

  if (first && route) {
    await route.close({ code: 1012, reason: 'e2e: simulated drop' });
    const dropped = await waitStats(p2, (s) => s.phase !== 'playing', 5000);
    check(!!dropped, 'page notices the drop', dropped ? `phase ${dropped.phase}` : '');
    const banner = await p2.textContent('#banner-text');
    check(/reconnect/i.test(banner), 'banner says it is reconnecting', banner);
    const back = await waitStats(p2, (s) => s.connects >= 2 && s.phase === 'playing' && s.framesDrawn >= 3, 30000);
    check(!!back, 'reconnected and rejoined with frames flowing',
      back ? `connects ${back.connects}, frames ${back.framesDrawn}` : JSON.stringify(await stats(p2)));
    await p2.evaluate(() => window.scrollTo(0, 0));
    const shotR = path.join(outDir, 'e2e-reconnect.png');
    await p2.screenshot({ path: shotR });
    check(true, 'screenshot after reconnecting', shotR);
  }
  await ctx2.close();

  check(pageErrors.length === 0, 'no page errors', pageErrors.slice(0, 5).join(' | '));
} catch (err) {
  check(false, 'test ran to the end', err.stack || String(err));
} finally {
  await browser.close();
}

console.log(`e2e: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
