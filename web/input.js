// Keyboard and mouse intake. Key bindings are chosen by the model's key names (joined.keys), so
// a variant the client does not know still gets digits 1…n. Held keys become a bitmask over
// joined.keys; mouse movement (pointer lock) accumulates between input messages.

// KeyboardEvent.code values (layout independent) per model key name. The first one is the
// primary binding shown first in the legend.
const BY_NAME = {
  forward: ['KeyW', 'ArrowUp'],
  back: ['KeyS', 'ArrowDown'],
  left: ['KeyA', 'ArrowLeft'],
  right: ['KeyD', 'ArrowRight'],
  // templerun
  'no-move': ['Digit1', 'KeyN'],
  jump: ['Digit2', 'ArrowUp', 'Space'],
  slide: ['Digit3', 'ArrowDown'],
  'turn-left': ['Digit4', 'ArrowLeft'],
  'turn-right': ['Digit5', 'ArrowRight'],
  'left-side': ['Digit6', 'KeyA'],
  'right-side': ['Digit7', 'KeyD'],
};

const LABELS = {
  forward: 'forward', back: 'back', left: 'strafe left', right: 'strafe right',
  'no-move': 'no move', jump: 'jump', slide: 'slide', 'turn-left': 'turn left',
  'turn-right': 'turn right', 'left-side': 'left side', 'right-side': 'right side',
};

// Steering keys for variants that take the mouse but have no left/right key (gta_drive steers
// with the mouse's horizontal component): holding one adds a fixed horizontal mouse rate.
const STEER = { left: ['KeyA', 'ArrowLeft'], right: ['KeyD', 'ArrowRight'] };

// Steering keys turn at the reference's deliberate rate, 0.1 model units per video frame. The
// server applies the sum of the deltas received during a block to each of the block's frames, so
// a held key adds 0.1 per block period (12 frames) in proportion to the time it was held.
export const STEER_PER_FRAME = 0.1;
const FRAMES_PER_BLOCK = 12;
// Model units per pixel of pointer-lock movement at sensitivity 1 (PROTOCOL.md "Mouse"): about
// 50 px of movement during one block is the reference's 0.1.
export const MOUSE_UNITS_PER_PX = 0.002;

export function keyLabel(code) {
  if (code.startsWith('Key')) return code.slice(3);
  if (code.startsWith('Digit')) return code.slice(5);
  const named = { ArrowUp: '↑', ArrowDown: '↓', ArrowLeft: '←', ArrowRight: '→', Space: 'Space' };
  return named[code] || code;
}

// bindings: [{name, bit (or -1 for steering), codes, label, steer (−1/+1 or 0)}]
export function bindingsFor(keys, mouse) {
  const out = [];
  const taken = new Set(); // one code drives one key, whatever a future variant's names are
  keys.forEach((name, i) => {
    let codes = BY_NAME[name] ? [...BY_NAME[name]] : i < 9 ? [`Digit${i + 1}`] : [];
    codes = codes.filter((c) => !taken.has(c));
    codes.forEach((c) => taken.add(c));
    out.push({ name, bit: i, codes, label: LABELS[name] || name, steer: 0 });
  });
  if (mouse && !keys.includes('left') && !keys.includes('right')) {
    for (const [dir, sign] of [['left', -1], ['right', 1]]) {
      const codes = STEER[dir].filter((c) => !taken.has(c));
      if (codes.length) out.push({ name: `steer-${dir}`, bit: -1, codes, label: `steer ${dir}`, steer: sign });
    }
  }
  return out;
}

export class Input {
  constructor() {
    this.bindings = [];
    this.byCode = new Map();
    this.held = new Map(); // codes currently down → performance.now() when pressed
    this.mouseEnabled = false;
    this.dxPx = 0; // accumulated since the last take()
    this.dyPx = 0;
    this.moved = false;
    this.sensitivity = 1;
    this.invertY = false;
    this.onChange = null; // called when the held-key state changes
  }

  configure(keys, mouse) {
    this.bindings = bindingsFor(keys, mouse);
    this.byCode = new Map();
    for (const b of this.bindings) for (const c of b.codes) this.byCode.set(c, b);
    this.mouseEnabled = !!mouse;
    this.clear();
  }

  clear() {
    this.held.clear();
    this.dxPx = this.dyPx = 0;
    this.moved = false;
  }

  handles(code) { return this.byCode.has(code); }

  keyDown(code) {
    if (!this.byCode.has(code) || this.held.has(code)) return false;
    this.held.set(code, performance.now());
    if (this.onChange) this.onChange();
    return true;
  }

  keyUp(code) {
    if (!this.held.delete(code)) return false;
    if (this.onChange) this.onChange();
    return true;
  }

  mouseMove(mx, my) {
    if (!this.mouseEnabled) return;
    this.dxPx += mx;
    this.dyPx += my;
    if (mx || my) this.moved = true;
  }

  // Names of the model keys (and steering pseudo-keys) held now, for the legend.
  heldNames() {
    const s = new Set();
    for (const c of this.held.keys()) s.add(this.byCode.get(c).name);
    return s;
  }

  keysMask() {
    let m = 0;
    for (const c of this.held.keys()) {
      const b = this.byCode.get(c);
      if (b.bit >= 0) m |= 1 << b.bit;
    }
    return m >>> 0;
  }

  active() { return this.held.size > 0 || this.moved; }

  // The mouse part of the next input message, in model units; resets the accumulators.
  // dy > 0 looks up (PROTOCOL.md), so moving the mouse up (negative movementY) looks up unless
  // inverted. now, lastAt: this and the previous input's performance.now(); fps: the session's.
  takeMouse(now, lastAt, fps = 25) {
    const k = MOUSE_UNITS_PER_PX * this.sensitivity;
    let dx = this.dxPx * k;
    let dy = -this.dyPx * k * (this.invertY ? -1 : 1);
    const blockMs = (1000 * FRAMES_PER_BLOCK) / fps;
    for (const [c, downAt] of this.held) {
      const b = this.byCode.get(c);
      if (!b.steer) continue;
      const dt = Math.min(now - Math.max(lastAt, downAt), blockMs); // at most a block's worth
      if (dt > 0) dx += (b.steer * STEER_PER_FRAME * dt) / blockMs;
    }
    // The server takes at most ±1000 per message and clamps a block's sum to ±0.5 anyway.
    dx = Math.max(-1000, Math.min(1000, dx));
    dy = Math.max(-1000, Math.min(1000, dy));
    this.dxPx = this.dyPx = 0;
    this.moved = false;
    return { dx, dy };
  }
}
