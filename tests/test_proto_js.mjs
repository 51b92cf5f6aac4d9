// Cross-check of web/proto.js against the C codec (proto/proto.c), through tests/proto_cat:
//   1. JS -> C: messages of every type (hand-picked edge cases and seeded random ones) encoded by
//      proto.js are decoded by C; C's canonical text must equal this file's rendering of the
//      message, and C's re-encoding must equal proto.js's bytes;
//   2. C -> JS: random messages of every type encoded by C (proto_cat --samples) are decoded by
//      proto.js (same canonical text) and re-encoded by proto.js to the same bytes;
//   3. errors: invalid messages (built with the raw msgpack encoder, and every truncation of valid
//      ones) are refused by C's decoder and proto.js's decoder with the same code and field path,
//      and proto.js's encoder refuses the same values with the same code and path.
// Usage: node --experimental-detect-module test_proto_js.mjs PROTO_CAT WEB_DIR
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [protoCat, webDir] = process.argv.slice(2);
if (!protoCat || !webDir) {
  console.error('usage: node test_proto_js.mjs PROTO_CAT WEB_DIR');
  process.exit(2);
}
// The UMD build as the browser's classic <script> would leave it: globalThis.MessagePack.
globalThis.MessagePack = createRequire(import.meta.url)(path.resolve(webDir, 'vendor/msgpack.min.js'));
const P = await import(pathToFileURL(path.resolve(webDir, 'proto.js')).href);
const raw = new globalThis.MessagePack.Encoder({ useBigInt64: true });

let checks = 0;
let failed = 0;
function check(ok, what, detail = '') {
  checks++;
  if (!ok) failed++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}${!ok && detail ? `\n${detail}` : ''}`);
}

// Canonical text (tests/proto_text.h describes it) ------------------------------------------------
const te = new TextEncoder();
const hex = (u8) => Array.from(u8, (b) => b.toString(16).padStart(2, '0')).join('');
const unhex = (s) => Uint8Array.from(s.match(/../g) ?? [], (h) => parseInt(h, 16));
function qstr(s) {
  let o = '"';
  for (const b of te.encode(s)) {
    o += b >= 0x20 && b <= 0x7e && b !== 0x22 && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
  }
  return `${o}"`;
}
const dv = new DataView(new ArrayBuffer(8));
function f32bits(v) {
  dv.setFloat32(0, v === 0 ? 0 : v);
  return `f32:${dv.getUint32(0).toString(16).padStart(8, '0')}`;
}
function f64bits(v) {
  dv.setFloat64(0, v === 0 ? 0 : v);
  return `f64:${dv.getBigUint64(0).toString(16).padStart(16, '0')}`;
}
// Renders a message as sent or as decoded: absent optional fields at their defaults, f32 rounded.
function render(m) {
  let out = `t=${m.t}\n`;
  for (const [key, kind] of P.FIELDS[m.t]) {
    const v = m[key];
    let s;
    switch (kind) {
      case 'u32': case 'u64': s = v === undefined || v === null ? 'none' : String(v); break;
      case 'f32': s = f32bits(Math.fround(Number(v ?? 0))); break;
      case 'f64': s = f64bits(Number(v)); break;
      case 'bool': s = String(v); break;
      case 'name': case 'text': s = qstr(v ?? ''); break;
      case 'names': s = `[${v.map(qstr).join(',')}]`; break;
      case 'bytes': { const b = v ?? new Uint8Array(0); s = `${b.length}:${hex(b)}`; break; }
    }
    out += `${key}=${s}\n`;
  }
  return out;
}

// Runs proto_cat with the given args and stdin; returns its blocks (arrays of lines, "." dropped).
function cat(args, input = '') {
  const r = spawnSync(protoCat, args, { input, maxBuffer: 1 << 28, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`proto_cat ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  const blocks = [];
  let cur = [];
  for (const line of r.stdout.split('\n')) {
    if (line === '.') {
      blocks.push(cur);
      cur = [];
    } else if (line !== '') {
      cur.push(line);
    }
  }
  return blocks;
}

// Random messages (seeded) ------------------------------------------------------------------------
let seed = 0x9e3779b9;
function rnd() { // mulberry32
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(rnd() * a.length)];
const randInt = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1));
const CHARS = ['a', 'Z', '0', ' ', '"', '\\', '\n', '\x01', '\x7f', 'é', 'ß', '€', '中', '🎮', '𝄞', '\u00a0'];
function randString(max) {
  let s = '';
  const target = rnd() < 0.3 ? max : randInt(0, max);
  for (;;) {
    const c = pick(CHARS);
    if (te.encode(s + c).length > target) break;
    s += c;
  }
  while (te.encode(s).length < target) s += 'x'; // exactly at the limit when asked
  return s;
}
const U64_SPECIAL = [0, 1, 127, 128, 65535, 65536, 4294967295, 4294967296, Number.MAX_SAFE_INTEGER,
  2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n];
function randValue(kind, lo, hi) {
  switch (kind) {
    case 'u32': return pick([lo, hi, randInt(lo, Math.min(hi, lo + 300)), lo + Math.floor(rnd() * (hi - lo + 1))]);
    case 'u64': return rnd() < 0.5 ? pick(U64_SPECIAL) : BigInt(Math.floor(rnd() * 2 ** 32)) * BigInt(randInt(0, 2 ** 32 - 1));
    case 'f32': return pick([lo, hi, 0, -0, 1e-45, randInt(Math.max(lo, -100), Math.min(hi, 100)), lo + rnd() * (hi - lo), 0.1]);
    case 'f64': return pick([Number.MAX_VALUE, -Number.MAX_VALUE, Number.MIN_VALUE, 0, -0, 4294967295, 4294967296,
      -2147483648, -2147483649, 2147483647.5, Date.now(), 1712345678901.25, (rnd() - 0.5) * 1e6, -1e-300, 1 / 3]);
    case 'bool': return rnd() < 0.5;
    case 'name': return randString(P.MAX_NAME);
    case 'text': return randString(P.MAX_TEXT);
    case 'names': return Array.from({ length: pick([0, 16, randInt(0, 16)]) }, () => randString(P.MAX_NAME));
    case 'bytes': return Uint8Array.from({ length: pick([lo, lo, randInt(lo, 300)]) }, () => randInt(0, 255));
  }
  throw new Error(kind);
}
function randMessage(t) {
  const m = { t };
  for (const [key, kind, opt, lo, hi] of P.FIELDS[t]) {
    if (opt && rnd() < 0.25) continue;
    m[key] = randValue(kind, lo, hi);
  }
  if (t === 'hello' && m.max < m.min) [m.min, m.max] = [m.max, m.min];
  if (t === 'queue' && m.pos > m.len) [m.pos, m.len] = [m.len, m.pos];
  if (t === 'join' && m.scene && m.img?.length) delete m[rnd() < 0.5 ? 'scene' : 'img'];
  return m;
}

// 1. JS -> C --------------------------------------------------------------------------------------
const euro21 = '€'.repeat(21); // 63 bytes
const fixed = [
  { t: 'hello', min: 1, max: P.VERSION, client: 'web' },
  { t: 'join' },
  { t: 'join', variant: 'templerun', seed: 0 },
  { t: 'join', variant: '', img: new Uint8Array([0x89, 0x50, 0x4e, 0x47]), token: 'x'.repeat(255), seed: 2n ** 64n - 1n },
  { t: 'join', scene: 'city', img: new Uint8Array(0) },
  { t: 'input', seq: 1, ms: 1234.5, keys: 0b1010101, dx: 0.1, dy: -0.5 },
  { t: 'input', seq: 4294967295, ms: Date.now(), keys: 0xffffffff, dx: -1000, dy: 1000 },
  { t: 'input', seq: 2, ms: -0, keys: 0, dx: -0, dy: 1e-45 },
  { t: 'ping', id: 0, ms: 0.25 },
  { t: 'pong', id: 7, ms: 1, sms: 2 ** 40 + 0.5 },
  { t: 'reset' },
  { t: 'leave' },
  { t: 'welcome', v: 1, server: euro21, max_msg: 1, max_upload: 0, max_px: 0, max_hz: 1,
    variants: Array(16).fill(euro21), scenes: [], auth: true },
  { t: 'joined', sid: 2n ** 53n + 1n, variant: 'universal', w: 640, h: 352, fps: 25,
    keys: ['forward', 'back', 'left', 'right'], mouse: true },
  { t: 'queue', pos: 1, len: 1 },
  { t: 'frame', n: 0, blk: 0, seq: 0, ms: 0, sms: 1e300, q_ms: 0, dit_ms: 1e9, vae_ms: 0.1,
    jpg_ms: 3, blk_ms: 1e-45, jpg: new Uint8Array([0xff, 0xd8, 0xff, 0xd9]) },
  { t: 'stats', fps: 24.9, sent: 2n ** 64n - 1n, dropped: 0, p50_ms: 41.5, p99_ms: 1e9, buffered: 3 },
  { t: 'error', code: 7, fatal: true, msg: 'server full: "queue" \\ 満員' },
];
const jsMsgs = [...fixed];
for (let i = 0; i < 40; i++) for (const t of P.TYPES) jsMsgs.push(randMessage(t));
{
  const encoded = jsMsgs.map((m) => P.encode(m));
  const blocks = cat(['--hex'], encoded.map((b) => `${hex(b)}\n`).join(''));
  let textBad = 0;
  let wireBad = 0;
  jsMsgs.forEach((m, i) => {
    const b = blocks[i] ?? [];
    const wire = b.at(-1)?.startsWith('wire=') ? b.at(-1).slice(5) : null;
    const text = `${b.slice(0, wire === null ? b.length : -1).join('\n')}\n`;
    const want = render(m);
    if (text !== want && textBad++ < 3) console.log(`  JS sent:\n${want}  C decoded:\n${text}`);
    if (wire !== hex(encoded[i]) && wireBad++ < 3) console.log(`  ${m.t}: JS ${hex(encoded[i])}\n  ${' '.repeat(m.t.length)}  C  ${wire}`);
  });
  check(blocks.length === jsMsgs.length && textBad === 0,
    `JS -> C: ${jsMsgs.length} messages (${fixed.length} fixed, the rest random, all 13 types) decoded by C as sent (${textBad} differ)`);
  check(wireBad === 0, `JS -> C: C re-encodes each to proto.js's exact bytes (${wireBad} differ)`);
}

// 2. C -> JS --------------------------------------------------------------------------------------
{
  const blocks = cat(['--samples', '12345', '60']);
  let textBad = 0;
  let wireBad = 0;
  let decodeBad = 0;
  for (const b of blocks) {
    const bytes = unhex(b[0].slice(4));
    const text = `${b.slice(1).join('\n')}\n`;
    let m;
    try {
      m = P.decode(bytes);
    } catch (e) {
      if (decodeBad++ < 3) console.log(`  proto.js refused C's ${b[1]}: ${e.message}`);
      continue;
    }
    if (render(m) !== text && textBad++ < 3) console.log(`  C sent:\n${text}  JS decoded:\n${render(m)}`);
    const again = hex(P.encode(m));
    if (again !== hex(bytes) && wireBad++ < 3) console.log(`  ${m.t}: C  ${hex(bytes)}\n  ${' '.repeat(m.t.length)}  JS ${again}`);
  }
  check(blocks.length === 60 * 13 && decodeBad === 0 && textBad === 0,
    `C -> JS: ${blocks.length} random messages of all 13 types decoded by proto.js as sent (${decodeBad} refused, ${textBad} differ)`);
  check(wireBad === 0, `C -> JS: proto.js re-encodes each to C's exact bytes (${wireBad} differ)`);
}

// 3. Errors ---------------------------------------------------------------------------------------
const MAXB = 100; // byte-field limit for both decoders here
function jsError(bytes) {
  try {
    P.decode(bytes, { maxBytes: MAXB });
    return 'decoded';
  } catch (e) {
    if (!(e instanceof P.ProtoError)) return `threw ${e}`;
    return `error=${e.code} ${P.errorName(e.code)} ${e.path}`;
  }
}
const bad = []; // [what, bytes, expected JS-encode refusal (or null)]
const addRaw = (what, obj) => bad.push([what, raw.encode(obj), obj]);
bad.push(['empty', new Uint8Array(0), null]);
for (const h of ['05', '9101', 'a178', 'c0', 'c400', 'ca00000000', 'c1', '81a174c1', '8000', '81a174a3666f6f',
  '8201a174a56c65617665', '82a174a56c65617665a178810102', '82a174a56c65617665a17891810203']) { // int keys
  bad.push([`bytes ${h}`, unhex(h), null]);
}
bad.push(['trailing byte', Uint8Array.from([...P.encode({ t: 'leave' }), 0xc0]), null]);
addRaw('t missing', { seq: 1 });
addRaw('t an int', { t: 5 });
addRaw('t unknown', { t: 'teleport' });
addRaw('t in capitals', { t: 'INPUT' });
addRaw('t inherited name', { t: 'constructor' });
const wrongFor = { u32: 'x', u64: 'x', f32: 'x', f64: 'x', bool: 1, name: 5, text: 5, names: 'x', bytes: 'x' };
for (const t of P.TYPES) {
  const base = fixed.find((m) => m.t === t && P.FIELDS[t].every(([k, , opt]) => opt || k in m));
  const full = { ...base };
  for (const [key, kind, opt, lo, hi] of P.FIELDS[t]) {
    if (!opt) {
      const m = { ...full };
      delete m[key];
      addRaw(`${t}.${key} missing`, m);
    }
    addRaw(`${t}.${key} wrong type`, { ...full, [key]: wrongFor[kind] });
    if (kind === 'u32' || kind === 'u64') {
      addRaw(`${t}.${key} -1`, { ...full, [key]: -1 });
      addRaw(`${t}.${key} 1.5`, { ...full, [key]: 1.5 });
      if (lo > 0) addRaw(`${t}.${key} below ${lo}`, { ...full, [key]: lo - 1 });
      if (kind === 'u32') addRaw(`${t}.${key} above ${hi}`, { ...full, [key]: BigInt(hi) + 1n });
    }
    if (kind === 'f32' || kind === 'f64') {
      addRaw(`${t}.${key} NaN`, { ...full, [key]: NaN });
      addRaw(`${t}.${key} -Infinity`, { ...full, [key]: -Infinity });
      if (lo !== undefined) addRaw(`${t}.${key} above ${hi}`, { ...full, [key]: hi * 1.5 + 1 });
      if (lo !== undefined) addRaw(`${t}.${key} below ${lo}`, { ...full, [key]: lo - 0.5 });
    }
    if (kind === 'name') addRaw(`${t}.${key} 64 bytes`, { ...full, [key]: `${'€'.repeat(21)}a` });
    if (kind === 'name') addRaw(`${t}.${key} with NUL`, { ...full, [key]: 'a\0b' });
    if (kind === 'text') addRaw(`${t}.${key} 256 bytes`, { ...full, [key]: 'y'.repeat(256) });
    if (kind === 'names') {
      addRaw(`${t}.${key} 17 entries`, { ...full, [key]: Array(17).fill('k') });
      addRaw(`${t}.${key}[2] 64 bytes`, { ...full, [key]: ['a', 'b', 'c'.repeat(64)] });
      addRaw(`${t}.${key}[1] an int`, { ...full, [key]: ['a', 1] });
    }
    if (kind === 'bytes') {
      addRaw(`${t}.${key} over the limit`, { ...full, [key]: new Uint8Array(MAXB + 1) });
      if (lo > 0) addRaw(`${t}.${key} empty`, { ...full, [key]: new Uint8Array(0) });
    }
  }
}
addRaw('hello max below min', { t: 'hello', min: 3, max: 2 });
addRaw('queue pos past len', { t: 'queue', pos: 5, len: 4 });
addRaw('join with scene and img', { t: 'join', scene: 'city', img: new Uint8Array(3) });
// Every truncation of a few valid messages.
for (const m of ['hello', 'input', 'welcome', 'frame'].map((t) => fixed.find((f) => f.t === t))) {
  const b = P.encode(m);
  for (let n = 0; n < b.length; n++) bad.push([`${m.t} cut at ${n}/${b.length}`, b.subarray(0, n), null]);
}
{
  const blocks = cat(['--max-bytes', String(MAXB), '--hex'], bad.map(([, b]) => `${hex(b)}\n`).join(''));
  let differ = 0;
  let accepted = 0;
  let encDiffer = 0;
  bad.forEach(([what, bytes, obj], i) => {
    const c = (blocks[i] ?? [])[0] ?? '(none)';
    const js = jsError(bytes);
    if (!c.startsWith('error=') || js === 'decoded') accepted++;
    if (c !== js && differ++ < 5) console.log(`  ${what}: C "${c}", JS "${js}"`);
    // proto.js's encoder refuses the same object with the same code and path (byte-field limits
    // are the decoder's, so over-the-limit blobs are not refused by encode).
    if (obj && !what.endsWith('over the limit')) {
      let e = 'encoded';
      try { P.encode(obj); } catch (x) { e = `error=${x.code} ${P.errorName(x.code)} ${x.path}`; }
      if (e !== c && encDiffer++ < 5) console.log(`  ${what}: C decode "${c}", JS encode "${e}"`);
    }
  });
  check(accepted === 0, `errors: ${bad.length} invalid messages all refused by both decoders (${accepted} accepted)`);
  check(differ === 0, `errors: C and proto.js give the same code and field path for each (${differ} differ)`);
  check(encDiffer === 0, `errors: proto.js's encoder refuses the same values with the same code and path (${encDiffer} differ)`);
}

// The tables ---------------------------------------------------------------------------------------
check(P.VERSION === 1 && P.TYPES.length === 13 && P.TYPES[0] === 'hello' && P.TYPES[12] === 'error',
  'VERSION 1 and the 13 types in proto_type order');
check(P.ERRORS.length === 18 && P.ERRORS.every(([c], i) => c === i + 1) && P.ERR.SERVER_FULL === 7 &&
  P.closeCode(15) === 1001 && P.closeCode(7) === 4007 && P.isFatal(3) === false && P.errorName(18) === 'internal',
  'error table: codes 1..18, close codes, fatal defaults');

console.log(`test_proto_js: ${checks} checks, ${failed} failed`);
process.exit(failed ? 1 : 0);
