// The browser side of the wmserve wire protocol (proto/PROTOCOL.md), kept exactly consistent with
// the C codec (proto/proto.c): the same message keys, field kinds, ranges and error paths, and the
// same canonical encoding, byte for byte (tests/test_proto_js.mjs checks both directions).
//
// Messages are plain objects keyed by the wire names: {t: 'input', seq, ms, keys, dy, dx}.
// encode(msg) -> Uint8Array for ws.send; decode(bytes, {maxBytes}) -> message object. Both throw a
// ProtoError {code, path} ("input.seq", "t", "message") on anything PROTOCOL.md does not allow.
// u64 fields decode to a Number when at most 2^53 - 1 and to a BigInt above; encode takes either.
// Optional fields may be left out (or null): they read as '' / empty bytes / 0 / null (seed).
//
// Needs vendor/msgpack.min.js (@msgpack/msgpack, UMD build) loaded first by a classic
// <script src="vendor/msgpack.min.js"></script>: it defines globalThis.MessagePack.
const MP = globalThis.MessagePack;
if (!MP || !MP.Encoder || !MP.Decoder) {
  throw new Error('proto.js: load vendor/msgpack.min.js with a classic <script> before this module');
}

export const VERSION = 1; // the protocol version this client speaks (hello {min, max})
export const VERSION_MIN = 1;
export const MAX_NAME = 63; // UTF-8 bytes of a name (variant, scene, client, server, key name)
export const MAX_TEXT = 255; // UTF-8 bytes of a token or an error message
export const MAX_LIST = 16; // entries of a name list

const U32 = 0xffffffff;
const U64 = 0xffffffffffffffffn;
const MS = 1e9;

// Per type, in wire order: [key, kind, optional, min, max]. Kinds: u32, u64, f32, f64, bool,
// name, text, names (list of names), bytes (min = minimum length). PROTOCOL.md "Messages".
export const FIELDS = Object.freeze({
  hello: [['min', 'u32', 0, 1, U32], ['max', 'u32', 0, 1, U32], ['client', 'name', 1]],
  welcome: [['v', 'u32', 0, 1, U32], ['server', 'name', 0], ['max_msg', 'u32', 0, 1, U32],
    ['max_upload', 'u32', 0, 0, U32], ['max_px', 'u32', 0, 0, U32], ['max_hz', 'u32', 0, 1, U32],
    ['variants', 'names', 0], ['scenes', 'names', 0], ['auth', 'bool', 0]],
  join: [['variant', 'name', 1], ['scene', 'name', 1], ['img', 'bytes', 1, 0], ['token', 'text', 1],
    ['seed', 'u64', 1, 0, U64]],
  joined: [['sid', 'u64', 0, 0, U64], ['variant', 'name', 0], ['w', 'u32', 0, 1, 16384],
    ['h', 'u32', 0, 1, 16384], ['fps', 'u32', 0, 1, 1000], ['keys', 'names', 0], ['mouse', 'bool', 0]],
  queue: [['pos', 'u32', 0, 1, U32], ['len', 'u32', 0, 1, U32]],
  input: [['seq', 'u32', 0, 1, U32], ['ms', 'f64', 0], ['keys', 'u32', 0, 0, U32],
    ['dy', 'f32', 1, -1000, 1000], ['dx', 'f32', 1, -1000, 1000]],
  ping: [['id', 'u32', 0, 0, U32], ['ms', 'f64', 0]],
  pong: [['id', 'u32', 0, 0, U32], ['ms', 'f64', 0], ['sms', 'f64', 0]],
  reset: [],
  leave: [],
  frame: [['n', 'u64', 0, 0, U64], ['blk', 'u64', 0, 0, U64], ['seq', 'u32', 0, 0, U32],
    ['ms', 'f64', 0], ['sms', 'f64', 0], ['q_ms', 'f32', 0, 0, MS], ['dit_ms', 'f32', 0, 0, MS],
    ['vae_ms', 'f32', 0, 0, MS], ['jpg_ms', 'f32', 0, 0, MS], ['blk_ms', 'f32', 0, 0, MS],
    ['jpg', 'bytes', 0, 1]],
  stats: [['fps', 'f32', 0, 0, 1e4], ['sent', 'u64', 0, 0, U64], ['dropped', 'u64', 0, 0, U64],
    ['p50_ms', 'f32', 0, 0, MS], ['p99_ms', 'f32', 0, 0, MS], ['buffered', 'u32', 0, 0, U32]],
  error: [['code', 'u32', 0, 1, 999], ['fatal', 'bool', 0], ['msg', 'text', 0]],
});
export const TYPES = Object.freeze(Object.keys(FIELDS)); // in proto_type order, from 1

// [code, name, fatal by default] (PROTOCOL.md "Errors"); codes are stable.
export const ERRORS = Object.freeze([
  [1, 'bad_message', true], [2, 'unknown_type', false], [3, 'bad_field', false],
  [4, 'version', true], [5, 'not_joined', false], [6, 'already_joined', false],
  [7, 'server_full', true], [8, 'unauthorized', true], [9, 'too_large', true],
  [10, 'rate_limited', false], [11, 'bad_image', false], [12, 'idle_timeout', true],
  [13, 'slow_consumer', true], [14, 'engine', true], [15, 'shutting_down', true],
  [16, 'unknown_variant', false], [17, 'unknown_scene', false], [18, 'internal', true],
]);
export const ERR = Object.freeze(Object.fromEntries(ERRORS.map(([c, n]) => [n.toUpperCase(), c])));
const byCode = new Map(ERRORS.map((e) => [e[0], e]));
export const errorName = (code) => byCode.get(Math.abs(code))?.[1] ?? 'unknown';
export const isFatal = (code) => byCode.get(Math.abs(code))?.[2] ?? true;
export const closeCode = (code) => {
  code = Math.abs(code);
  return code === ERR.SHUTTING_DOWN ? 1001 : code >= 1 && code <= 999 ? 4000 + code : 4000 + ERR.INTERNAL;
};

export class ProtoError extends Error {
  constructor(code, path, reason) {
    super(`${path}: ${reason}`);
    this.name = 'ProtoError';
    this.code = code; // ERR.*
    this.path = path; // "type.key", "type.key[i]", "t" or "message", as in the C codec's err
  }
}

const te = new TextEncoder();
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const bad = (path, reason) => new ProtoError(ERR.BAD_FIELD, path, reason);

function checkString(v, max, path) {
  if (typeof v !== 'string') throw bad(path, `expected a string, got ${typeof v}`);
  const n = te.encode(v).length;
  if (n > max) throw bad(path, `${n} bytes, over the limit of ${max}`);
  if (v.includes('\0')) throw bad(path, 'contains a NUL byte');
  if (LONE_SURROGATE.test(v)) throw bad(path, 'not valid UTF-8');
  return v;
}

// Checks one present value of field f and returns it normalised (f32 rounded, -0 as 0, u64 as a
// Number when safe); the same rules as proto.c's get_field/check_field.
function checkValue(f, v, maxBytes, path) {
  const [, kind, , lo, hi] = f;
  switch (kind) {
    case 'u32':
    case 'u64':
      if (typeof v !== 'bigint' && !(typeof v === 'number' && Number.isInteger(v))) {
        throw bad(path, `expected an integer, got ${typeof v === 'number' ? v : typeof v}`);
      }
      if (v < 0) throw bad(path, `negative (${v})`);
      if (v < lo || v > hi) throw bad(path, `${v} out of range [${lo}, ${hi}]`);
      return typeof v === 'bigint' && v > Number.MAX_SAFE_INTEGER ? v : Number(v);
    case 'f32':
    case 'f64': {
      if (typeof v !== 'number' && typeof v !== 'bigint') throw bad(path, `expected a number, got ${typeof v}`);
      let d = Number(v);
      if (!Number.isFinite(d)) throw bad(path, 'not finite');
      if (lo !== undefined && !(d >= lo && d <= hi)) throw bad(path, `${d} out of range [${lo}, ${hi}]`);
      if (kind === 'f32') d = Math.fround(d);
      return d === 0 ? 0 : d; // -0 reads as 0, as the encoders send it
    }
    case 'bool':
      if (typeof v !== 'boolean') throw bad(path, `expected a bool, got ${typeof v}`);
      return v;
    case 'name':
      return checkString(v, MAX_NAME, path);
    case 'text':
      return checkString(v, MAX_TEXT, path);
    case 'names':
      if (!Array.isArray(v)) throw bad(path, `expected an array, got ${typeof v}`);
      if (v.length > MAX_LIST) throw bad(path, `${v.length} entries, over the limit of ${MAX_LIST}`);
      return v.map((s, i) => checkString(s, MAX_NAME, `${path}[${i}]`));
    case 'bytes':
      if (!(v instanceof Uint8Array)) throw bad(path, 'expected bin');
      if (v.length > maxBytes) {
        throw new ProtoError(ERR.TOO_LARGE, path, `${v.length} bytes, over the limit of ${maxBytes}`);
      }
      if (v.length < lo) throw bad(path, 'empty');
      return v;
  }
  throw new ProtoError(ERR.INTERNAL, path, `bad field kind ${kind}`);
}

function defaultOf(kind) {
  return kind === 'bytes' ? new Uint8Array(0) : kind === 'u64' ? null : kind === 'f32' ? 0 : '';
}

// Optional fields at their default are left out (u64's default is absence: seed 0 is sent).
function isDefault(kind, v) {
  return kind === 'bytes' ? v.length === 0 : kind === 'f32' ? v === 0 : kind === 'u64' ? false : v === '';
}

function crossCheck(m) {
  if (m.t === 'hello' && m.max < m.min) throw bad('hello.max', `${m.max} below min ${m.min}`);
  if (m.t === 'join' && m.scene && m.img?.length) throw bad('join.img', 'given together with a scene');
  if (m.t === 'queue' && m.pos > m.len) throw bad('queue.pos', `${m.pos} past len ${m.len}`);
}

const encoder = new MP.Encoder({ useBigInt64: true });
const decoder = new MP.Decoder({
  useBigInt64: true,
  mapKeyConverter: (k) => { // map keys are strings at every depth, as in proto.c
    if (typeof k !== 'string') throw new TypeError(`a map key is a ${typeof k}, not a string`);
    return k;
  },
});

// Encodes a message object; the result is a fresh Uint8Array.
export function encode(msg) {
  const t = msg?.t;
  if (t === undefined || t === null) throw bad('t', 'missing');
  if (typeof t !== 'string') throw bad('t', `expected a string, got ${typeof t}`);
  if (!Object.hasOwn(FIELDS, t)) throw new ProtoError(ERR.UNKNOWN_TYPE, 't', `unknown type "${t}"`);
  const out = { t };
  for (const f of FIELDS[t]) {
    const [key, kind, opt] = f;
    const path = `${t}.${key}`;
    const v0 = msg[key];
    if (v0 === undefined || v0 === null) {
      if (opt) continue;
      throw bad(path, 'missing');
    }
    const v = checkValue(f, v0, Infinity, path);
    if (opt && isDefault(kind, v)) continue;
    // Integers past 32 bits go as BigInt, so that the encoder writes uint64 (0xcf) as C does;
    // numbers (f32/f64) stay numbers: int when integral in [-2^31, 2^32), else float64.
    out[key] = (kind === 'u32' || kind === 'u64') && v > U32 ? BigInt(v) : v;
  }
  crossCheck(out);
  return encoder.encode(out);
}

// Decodes one message; byte fields are views into `bytes` (valid while it is). maxBytes bounds
// byte fields (TOO_LARGE past it). Cannot tell an integral float64 from an int, nor see invalid
// UTF-8 (read as U+FFFD), duplicate keys or nesting past 8, which the C codec rejects: it is meant
// for the server's messages, which proto.c wrote.
export function decode(bytes, { maxBytes = Infinity } = {}) {
  let o;
  try {
    o = decoder.decode(bytes);
  } catch (e) {
    throw new ProtoError(ERR.BAD_MESSAGE, 'message', e.message);
  }
  if (o === null || typeof o !== 'object' || Object.getPrototypeOf(o) !== Object.prototype) {
    throw new ProtoError(ERR.BAD_MESSAGE, 'message', 'not a map');
  }
  const has = (k) => Object.hasOwn(o, k) && o[k] !== null && o[k] !== undefined;
  if (!has('t')) throw bad('t', 'missing');
  const t = o.t;
  if (typeof t !== 'string') throw bad('t', `expected a string, got ${typeof t}`);
  if (!Object.hasOwn(FIELDS, t)) throw new ProtoError(ERR.UNKNOWN_TYPE, 't', `unknown type "${t}"`);
  const out = { t };
  for (const f of FIELDS[t]) {
    const [key, kind, opt] = f;
    const path = `${t}.${key}`;
    if (!has(key)) {
      if (!opt) throw bad(path, 'missing');
      out[key] = defaultOf(kind);
      continue;
    }
    out[key] = checkValue(f, o[key], maxBytes, path);
  }
  crossCheck(out);
  return out;
}
