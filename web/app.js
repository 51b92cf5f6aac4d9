// wmserve browser client: connects to /ws, lets the player pick a game and a start image, streams
// JPEG frames onto the canvas, sends keyboard/mouse input at a steady rate and shows live stats.
// Session flow: hello → welcome → join → (queue →) joined → frames … ; leave or reset at will;
// after an unexpected drop it reconnects with back-off and rejoins with the same choices.

import * as proto from './proto.js';
import { Connection, wsUrl, backoffMs } from './net.js';
import { Input } from './input.js';
import { Stats } from './stats.js';
import * as ui from './ui.js';

const $ = ui.$;
const CLIENT_NAME = 'web/1';
const INPUT_PERIOD_MS = 40; // one input per video frame at 25 fps while anything is held/moving
const PING_PERIOD_MS = 1000;
const OVERLAY_PERIOD_MS = 250;
const MAX_DECODES = 2; // JPEG decodes in flight; newer frames replace a waiting one
const LS_SENS = 'wmserve.sensitivity';
const LS_INVERT = 'wmserve.invertY';
const LS_OVERLAY = 'wmserve.overlay';

// Fatal errors after which reconnecting by itself would only repeat the failure or defeat the
// server's decision; the page says why and waits for the player instead.
const RETRY_AFTER = new Set(['shutting_down', 'slow_consumer', 'internal', 'engine']);

const stats = new Stats();
const input = new Input();
const canvas = $('view');
const ctx = canvas.getContext('2d', { alpha: false, desynchronized: true });

const st = {
  phase: 'connecting', // connecting | ready | joining | queued | playing | leaving | closed
  welcome: null,
  joined: null,
  choice: { variant: '', scene: null, image: null, imageName: '' },
  wantSession: false, // the player asked to play: rejoin after a reconnect
  fatal: null, // last fatal error {code, name, message}
  attempt: 0,
  reconnectTimer: 0,
  seq: 0, // last input seq sent on this connection (PROTOCOL.md: from 1, +1 per input)
  gen: 0, // bumped by every joined and close: decodes of an older generation are discarded
  leaving: false,
  pingId: 0,
  inputDirty: false,
  lastInputAt: -1e9,
  inputTimer: 0,
  // frame pipeline
  decoding: 0,
  waiting: null,
  lastDrawn: -1,
  bitmap: null, // last drawn frame, kept to redraw after a canvas resize
};

const conn = new Connection(wsUrl(), {
  onOpen,
  onMessage,
  onBadMessage: (err) => ui.showBanner(`Could not read a server message: ${err.message}`),
  onClose,
});

// ---------------------------------------------------------------------------------------------
// connection life

function connect() {
  clearTimeout(st.reconnectTimer);
  st.phase = 'connecting';
  ui.setConn('connecting', st.attempt ? `reconnecting (attempt ${st.attempt})…` : 'connecting…');
  conn.connect();
}

function onOpen() {
  stats.connects++;
  ui.setConn('open', 'connected');
  conn.send({ t: 'hello', min: proto.VERSION_MIN, max: proto.VERSION, client: CLIENT_NAME });
}

function onClose({ code, reason }) {
  stopTimers();
  const wasPlaying = st.phase === 'playing' || st.phase === 'queued' || st.phase === 'joining';
  st.phase = 'closed';
  st.joined = null;
  st.gen++;
  releaseMouse();
  input.clear();
  if (st.leaving) {
    // The server closes with 1000 after a leave: open a fresh connection for the next game.
    st.leaving = false;
    st.attempt = 0;
    connect();
    return;
  }
  // A fatal error arrives as an error message and then as close code 4000 + code.
  let fatal = st.fatal;
  st.fatal = null;
  if (!fatal && code >= 4000 && code < 5000) {
    const c = code - 4000;
    fatal = { code: c, name: proto.errorName(c), message: reason || '' };
  }
  if (fatal && !RETRY_AFTER.has(fatal.name)) {
    ui.setConn('closed', `disconnected: ${fatal.name}`);
    ui.showBanner(`${describeError(fatal)} Press Play to try again.`);
    ui.setPlaceholder(`Disconnected: ${fatal.name}`);
    st.wantSession = false;
    ui.renderLegend(null);
    showSetup(true);
    setJoinEnabled(true, 'Play');
    return;
  }
  const delay = backoffMs(st.attempt);
  st.attempt++;
  const why = fatal
    ? describeError(fatal)
    : `Connection lost${code ? ` (close code ${code}${reason ? `: ${reason}` : ''})` : ''}.`;
  ui.setConn('closed', 'disconnected');
  ui.showBanner(`${why} Reconnecting in ${(delay / 1000).toFixed(1)} s…`, 'info');
  if (wasPlaying) ui.setPlaceholder('Connection lost — reconnecting…');
  setJoinEnabled(false);
  st.reconnectTimer = setTimeout(connect, delay);
}

function onMessage(m) {
  switch (m.t) {
    case 'welcome': return onWelcome(m);
    case 'queue': return onQueue(m);
    case 'joined': return onJoined(m);
    case 'frame': return onFrame(m);
    case 'stats': stats.server = m; return;
    case 'pong': stats.rttMs = performance.now() - m.ms; return;
    case 'ping': conn.send({ t: 'pong', id: m.id, ms: m.ms, sms: performance.now() }); return;
    case 'error': return onError(m);
    default: return; // a type this client does not use
  }
}

function onWelcome(w) {
  st.welcome = w;
  st.attempt = 0;
  st.phase = 'ready';
  $('server-name').textContent = `${w.server} · protocol v${w.v}`;
  // Variants: keep the player's choice across reconnects when it is still offered.
  const sel = $('variant');
  sel.replaceChildren(...w.variants.map((v) => new Option(v, v)));
  if (!w.variants.length) sel.append(new Option('server default', ''));
  if (w.variants.includes(st.choice.variant)) sel.value = st.choice.variant;
  st.choice.variant = sel.value;
  if (st.choice.scene != null && !w.scenes.includes(st.choice.scene)) st.choice.scene = null;
  if (st.choice.scene == null && !st.choice.image) st.choice.scene = w.scenes[0] ?? '';
  ui.renderScenes(w.scenes, st.choice.scene, pickScene);
  $('token-field').hidden = !w.auth;
  $('upload-box').hidden = w.max_upload === 0;
  setJoinEnabled(true, 'Play');
  startPing();
  if (st.wantSession) {
    ui.showBanner('Reconnected; rejoining…', 'info', 3000);
    join();
  } else {
    ui.hideBanner();
    ui.setPlaceholder('Choose a game and a start image, then press Play.');
  }
}

function onQueue(q) {
  st.phase = 'queued';
  stats.queue = { position: q.pos, length: q.len };
  ui.setPlaceholder(`All slots are busy — you are number ${q.pos} of ${q.len} in the queue.`);
  ui.setConn('open', `queued (${q.pos}/${q.len})`);
  $('session-info').textContent = `Waiting for a free slot: number ${q.pos} of ${q.len}.`;
  $('reset').disabled = true;
  showSetup(false);
  renderOverlay();
}

// Also the answer to a reset (same sid): frames restart at n = 0, input seq numbers go on.
function onJoined(j) {
  const isReset = st.joined != null && j.sid === st.joined.sid;
  st.phase = 'playing';
  st.joined = j;
  st.gen++; // frames still being decoded belong to the old world
  st.lastDrawn = -1;
  st.waiting = null;
  stats.queue = null;
  if (isReset) {
    stats.resets++;
    return;
  }
  st.seq = 0;
  stats.resetSession();
  st.fatal = null;
  ui.hideBanner();
  ui.setConn('playing', `playing ${j.variant}`);
  $('session-info').textContent = `${j.variant} · ${j.w}×${j.h} at ${j.fps} fps · session ${String(j.sid)}`;
  $('screen').style.setProperty('--aspect', String(j.w / j.h));
  input.configure(j.keys, j.mouse);
  ui.renderLegend(input.bindings, j.mouse);
  $('lock-hint').hidden = !j.mouse;
  $('mouse-settings').hidden = !j.mouse;
  $('reset').disabled = false;
  ui.setPlaceholder('Starting…');
  showSetup(false);
  sizeCanvas();
  startInputTimer();
  canvas.focus({ preventScroll: true });
  // At high zoom the Play button sits below the view: bring the view back on screen.
  const r = $('screen').getBoundingClientRect();
  if (r.top < 0 || r.bottom > innerHeight) $('screen').scrollIntoView({ block: 'nearest' });
}

function onError(e) {
  const err = { code: e.code, name: proto.errorName(e.code), message: e.msg || '' };
  if (e.fatal) {
    st.fatal = err; // the close that follows decides what happens next
    return;
  }
  if (st.phase === 'joining') {
    // A refused join (bad image, unknown scene, …) leaves the connection open.
    st.phase = 'ready';
    setJoinEnabled(true, 'Play');
    ui.setPlaceholder('Choose a game and a start image, then press Play.');
  }
  ui.showBanner(describeError(err));
}

function describeError(e) {
  const text = {
    server_full: 'The server is full and its queue too; try again in a while.',
    unauthorized: 'The server needs a valid access token.',
    too_large: 'The message or upload is larger than the server accepts.',
    bad_image: 'The server could not use that image.',
    idle_timeout: 'The session ended after a period without input.',
    shutting_down: 'The server is shutting down.',
    slow_consumer: 'This connection could not keep up with the stream.',
    version: 'This page and the server speak different protocol versions; reload the page.',
  }[e.name];
  const detail = e.message ? ` (${e.message})` : '';
  return `${text || 'Server error.'} [${e.name}, code ${e.code}]${detail}`;
}

// ---------------------------------------------------------------------------------------------
// joining, leaving, reset

function pickScene(name) {
  st.choice.scene = name;
  st.choice.image = null;
  st.choice.imageName = '';
  $('upload').value = '';
  $('upload-note').textContent = '';
  $('upload-note').classList.remove('bad');
  ui.markScene(name);
}

// The server's limits (welcome.max_upload, max_px) are checked here first, so that a player
// learns at once why an image cannot be used instead of after a refused join.
async function onUpload() {
  const file = $('upload').files[0];
  const note = $('upload-note');
  note.classList.remove('bad');
  note.textContent = '';
  if (!file) return;
  const w = st.welcome;
  const bad = (text) => {
    note.textContent = text;
    note.classList.add('bad');
    $('upload').value = '';
    st.choice.image = null;
    st.choice.imageName = '';
    if (st.choice.scene == null && w) pickScene(w.scenes[0] ?? '');
  };
  if (file.type && file.type !== 'image/png' && file.type !== 'image/jpeg') {
    return bad(`${file.name} is not a PNG or JPEG image.`);
  }
  if (w && file.size > w.max_upload) {
    return bad(`${file.name} is ${ui.formatBytes(file.size)}; this server accepts images up to ` +
      `${ui.formatBytes(w.max_upload)}. Choose a smaller file.`);
  }
  let dims = null;
  try {
    const bmp = await createImageBitmap(file);
    dims = [bmp.width, bmp.height];
    bmp.close();
  } catch {
    return bad(`${file.name} could not be read as an image.`);
  }
  if (w && w.max_px && dims[0] * dims[1] > w.max_px) {
    return bad(`${file.name} is ${dims[0]}×${dims[1]} pixels; this server accepts at most ` +
      `${(w.max_px / 1e6).toFixed(1)} megapixels.`);
  }
  const bytes = new Uint8Array(await file.arrayBuffer());
  st.choice.image = bytes;
  st.choice.imageName = file.name;
  st.choice.scene = null;
  ui.markScene(null);
  note.textContent = `Using ${file.name} (${dims[0]}×${dims[1]}, ${ui.formatBytes(bytes.length)}).`;
}

function join() {
  if (['joining', 'queued', 'playing', 'leaving'].includes(st.phase)) return;
  // After a fatal close (or before the first welcome) Play opens a new connection; the join
  // follows its welcome.
  if (!conn.open || st.phase !== 'ready') {
    st.wantSession = true;
    st.attempt = 0;
    connect();
    return;
  }
  st.wantSession = true;
  st.phase = 'joining';
  stats.queue = null;
  setJoinEnabled(false, 'Joining…');
  ui.setPlaceholder('Joining…');
  const m = { t: 'join', variant: st.choice.variant };
  if (st.choice.image) m.img = st.choice.image;
  else m.scene = st.choice.scene || ''; // '' = the server's default scene
  const token = $('token').value.trim();
  if (st.welcome.auth || token) m.token = token;
  conn.send(m);
}

function leave() {
  st.wantSession = false;
  endSession('Session ended. Choose a game and a start image, then press Play.');
  setJoinEnabled(false);
  if (!conn.open) return; // a reconnect is under way; it lands on the start form
  st.phase = 'leaving';
  st.leaving = true;
  conn.send({ t: 'leave' });
  // The server answers a leave by closing (1000); should it not, close from this side.
  const c = conn;
  setTimeout(() => { if (st.leaving && c.open) c.close(1000, 'leave'); }, 2000);
}

function reset() {
  if (st.phase !== 'playing') return;
  conn.send({ t: 'reset' });
  ui.showBanner('World reset to the start image.', 'info', 2000);
}

function endSession(text) {
  clearInterval(st.inputTimer);
  st.joined = null;
  releaseMouse();
  input.clear();
  stats.queue = null;
  ui.renderLegend(null);
  $('mouse-settings').hidden = false;
  ui.setPlaceholder(text);
  ui.setConn(conn.open ? 'open' : 'closed', conn.open ? 'connected' : 'disconnected');
  showSetup(true);
}

function showSetup(on) {
  $('setup').hidden = !on;
  $('session').hidden = on;
}

function setJoinEnabled(on, label) {
  const b = $('join');
  b.disabled = !on;
  if (label) b.textContent = label;
}

// ---------------------------------------------------------------------------------------------
// frames

function onFrame(f) {
  if (st.phase !== 'playing') return;
  stats.framesReceived++;
  if (st.decoding < MAX_DECODES) decode(f, st.gen);
  else {
    if (st.waiting) stats.clientDropped++; // decoding fell behind: the older waiting frame goes
    st.waiting = f;
  }
}

// Decodes run concurrently, so they may finish out of order: a frame older than the one on
// screen is dropped (and counted), never drawn over a newer one.
function decode(f, gen) {
  st.decoding++;
  createImageBitmap(new Blob([f.jpg], { type: 'image/jpeg' }))
    .then((bmp) => {
      if (gen !== st.gen || st.phase !== 'playing' || f.n <= st.lastDrawn) {
        if (gen === st.gen && st.phase === 'playing') stats.clientDropped++;
        bmp.close();
        return;
      }
      draw(bmp, f);
    })
    .catch(() => {
      stats.decodeErrors++;
      stats.clientDropped++;
    })
    .finally(() => {
      st.decoding--;
      if (st.waiting && st.decoding < MAX_DECODES) {
        const w = st.waiting;
        st.waiting = null;
        decode(w, st.gen);
      }
    });
}

function draw(bmp, f) {
  const now = performance.now();
  paint(bmp);
  if (st.bitmap) st.bitmap.close();
  st.bitmap = bmp;
  if (st.lastDrawn < 0) ui.setPlaceholder(null);
  st.lastDrawn = f.n;
  stats.onDraw(now);
  stats.blockMs = f.blk_ms;
  stats.timings = { q_ms: f.q_ms, dit_ms: f.dit_ms, vae_ms: f.vae_ms, jpg_ms: f.jpg_ms, blk_ms: f.blk_ms };
  // PROTOCOL.md "Frames and latency": the first frame showing a newer input measures it.
  if (f.seq > stats.ackedSeq) {
    stats.ackedSeq = f.seq;
    if (f.ms > 0) stats.onLatency(now - f.ms);
  }
}

function paint(bmp) {
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(bmp, 0, 0, canvas.width, canvas.height);
}

// The canvas backing store follows its on-screen size in device pixels (so a 200% zoom or a
// HiDPI screen gets a high-quality upscale instead of a blurry CSS stretch), but never below the
// stream's own resolution.
function sizeCanvas() {
  const j = st.joined;
  const r = canvas.getBoundingClientRect();
  let w = Math.round(r.width * devicePixelRatio);
  let h = Math.round(r.height * devicePixelRatio);
  if (j && w < j.w) {
    w = j.w;
    h = j.h;
  }
  w = Math.min(Math.max(w, 1), 4096);
  h = Math.min(Math.max(h, 1), 4096);
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
    if (st.bitmap) paint(st.bitmap);
  }
}

// A zoom change alters devicePixelRatio, sometimes without resizing the canvas's CSS box.
function watchDpr() {
  const mq = matchMedia(`(resolution: ${devicePixelRatio}dppx)`);
  mq.addEventListener('change', () => {
    sizeCanvas();
    watchDpr();
  }, { once: true });
}

// ---------------------------------------------------------------------------------------------
// input

function sendInput() {
  if (st.phase !== 'playing' || !conn.open) return;
  const now = performance.now();
  const { dx, dy } = input.takeMouse(now, st.lastInputAt, st.joined.fps);
  st.seq = (st.seq + 1) >>> 0 || 1;
  conn.send({ t: 'input', seq: st.seq, ms: now, keys: input.keysMask(), dy, dx });
  stats.sentSeq = st.seq;
  st.lastInputAt = now;
  st.inputDirty = false;
}

// Key changes go out at once, but never faster than the server's input limit; the steady timer
// covers held keys and mouse movement.
function inputChanged() {
  ui.markHeld(input.heldNames());
  st.inputDirty = true;
  const minGap = 1000 / Math.max(1, st.welcome ? st.welcome.max_hz : 25);
  if (performance.now() - st.lastInputAt >= minGap) sendInput();
}

function startInputTimer() {
  clearInterval(st.inputTimer);
  st.inputTimer = setInterval(() => {
    if (st.inputDirty || input.active()) sendInput();
  }, INPUT_PERIOD_MS);
}

function isFormField(el) {
  return el && (el.tagName === 'INPUT' || el.tagName === 'SELECT' || el.tagName === 'TEXTAREA');
}

function onKeyDown(e) {
  if (e.code === 'F2' || (e.code === 'Backquote' && !isFormField(e.target))) {
    e.preventDefault();
    toggleOverlay();
    return;
  }
  if (st.phase !== 'playing' || isFormField(e.target) || e.ctrlKey || e.metaKey || e.altKey) return;
  if (input.handles(e.code)) {
    e.preventDefault();
    input.keyDown(e.code);
  } else if (e.code === 'KeyR' && !e.repeat) {
    e.preventDefault();
    reset();
  }
}

function onKeyUp(e) {
  if (input.handles(e.code)) input.keyUp(e.code);
}

function releaseAll() {
  if (input.held.size) {
    input.held.clear();
    inputChanged();
  }
}

function onCanvasClick() {
  if (st.phase === 'playing' && st.joined && st.joined.mouse && document.pointerLockElement !== canvas) {
    const p = canvas.requestPointerLock();
    if (p && p.catch) p.catch(() => {}); // refused (e.g. headless, or just released): fine
  }
}

function releaseMouse() {
  if (document.pointerLockElement === canvas) document.exitPointerLock();
}

// ---------------------------------------------------------------------------------------------
// timers, overlay, settings

let pingTimer = 0;
function startPing() {
  clearInterval(pingTimer);
  const ping = () => conn.send({ t: 'ping', id: (st.pingId = (st.pingId + 1) >>> 0), ms: performance.now() });
  ping();
  pingTimer = setInterval(ping, PING_PERIOD_MS);
}

function stopTimers() {
  clearInterval(pingTimer);
  clearInterval(st.inputTimer);
}

// The overlay shows only while a session is joining, queued or playing (before that its figures
// are empty); the player's on/off choice is kept separately.
let overlayOn = true;
function renderOverlay() {
  const el = $('overlay');
  const inSession = st.phase === 'playing' || st.phase === 'queued' || st.phase === 'joining';
  el.hidden = !(overlayOn && inSession);
  if (!el.hidden) el.textContent = stats.overlayText(st.phase);
}

function toggleOverlay(force) {
  const on = force ?? !overlayOn;
  overlayOn = on;
  $('toggle-stats').setAttribute('aria-pressed', String(on));
  localStorage.setItem(LS_OVERLAY, on ? '1' : '0');
  renderOverlay();
}

function loadSettings() {
  const s = Number.parseFloat(localStorage.getItem(LS_SENS));
  const sens = Number.isFinite(s) && s >= 0.1 && s <= 5 ? s : 1;
  $('sensitivity').value = String(sens);
  input.sensitivity = sens;
  $('sensitivity-out').textContent = `${sens.toFixed(1)}×`;
  input.invertY = localStorage.getItem(LS_INVERT) === '1';
  $('invert-y').checked = input.invertY;
  toggleOverlay(localStorage.getItem(LS_OVERLAY) !== '0');
}

function bind() {
  $('setup').addEventListener('submit', (e) => {
    e.preventDefault();
    join();
  });
  $('variant').addEventListener('change', (e) => { st.choice.variant = e.target.value; });
  $('upload').addEventListener('change', onUpload);
  $('reset').addEventListener('click', reset);
  $('leave').addEventListener('click', leave);
  $('banner-close').addEventListener('click', ui.hideBanner);
  $('toggle-stats').addEventListener('click', () => toggleOverlay());
  $('sensitivity').addEventListener('input', (e) => {
    input.sensitivity = Number.parseFloat(e.target.value);
    $('sensitivity-out').textContent = `${input.sensitivity.toFixed(1)}×`;
    localStorage.setItem(LS_SENS, String(input.sensitivity));
  });
  $('invert-y').addEventListener('change', (e) => {
    input.invertY = e.target.checked;
    localStorage.setItem(LS_INVERT, input.invertY ? '1' : '0');
  });
  window.addEventListener('keydown', onKeyDown);
  window.addEventListener('keyup', onKeyUp);
  window.addEventListener('blur', releaseAll);
  document.addEventListener('visibilitychange', () => { if (document.hidden) releaseAll(); });
  canvas.addEventListener('click', onCanvasClick);
  document.addEventListener('pointerlockchange', () => {
    const locked = document.pointerLockElement === canvas;
    $('screen').classList.toggle('locked', locked);
    $('lock-hint').hidden = locked || !(st.joined && st.joined.mouse);
  });
  document.addEventListener('mousemove', (e) => {
    if (document.pointerLockElement === canvas) input.mouseMove(e.movementX, e.movementY);
  });
  input.onChange = inputChanged;
  new ResizeObserver(() => sizeCanvas()).observe(canvas);
  watchDpr();
  setInterval(renderOverlay, OVERLAY_PERIOD_MS);
}

// Read-only debug hook for tests and curious players: a frozen snapshot per read.
Object.defineProperty(window, 'wmStats', {
  get: () => Object.freeze({ ...stats.snapshot(), phase: st.phase, variant: st.joined ? st.joined.variant : null }),
  configurable: false,
});

bind();
loadSettings();
ui.renderLegend(null);
connect();
