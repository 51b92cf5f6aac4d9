// Client-side measurements for the stats overlay and the read-only debug hook window.wmStats
// (used by the browser end-to-end test). Everything here is measured in this page with
// performance.now(); server figures are copied from frame and stats messages as they arrive.

const LATENCY_SAMPLES = 128;

export class Stats {
  constructor() {
    this.resetSession();
    this.rttMs = null;
    this.connects = 0;
  }

  // Called on every join: figures of a previous session must not leak into the new one.
  resetSession() {
    this.framesReceived = 0;
    this.framesDrawn = 0;
    this.clientDropped = 0; // decoded too late (a newer frame was already drawn) or skipped
    this.decodeErrors = 0;
    this.drawTimes = []; // performance.now() of recent draws, for delivered fps
    this.latencies = []; // input-to-frame samples, ms
    this.lastLatencyMs = null;
    this.ackedSeq = 0; // highest frame.input_seq seen on a drawn frame
    this.sentSeq = 0;
    this.blockMs = null;
    this.timings = null;
    this.lastFrame = -1;
    this.server = null; // last stats message {fps, sent, dropped, p50_ms, p99_ms, buffered}
    this.queue = null; // {position, length} while queued
    this.resets = 0;
  }

  onDraw(now) {
    this.framesDrawn++;
    this.drawTimes.push(now);
    while (this.drawTimes.length && now - this.drawTimes[0] > 1000) this.drawTimes.shift();
  }

  onLatency(ms) {
    this.lastLatencyMs = ms;
    this.latencies.push(ms);
    if (this.latencies.length > LATENCY_SAMPLES) this.latencies.shift();
  }

  fps(now = performance.now()) {
    while (this.drawTimes.length && now - this.drawTimes[0] > 1000) this.drawTimes.shift();
    return this.drawTimes.length; // frames drawn in the last second
  }

  latencyP50() {
    if (!this.latencies.length) return null;
    const s = [...this.latencies].sort((a, b) => a - b);
    return s[Math.floor((s.length - 1) / 2)];
  }

  // A plain, frozen copy: the hook never exposes live state that a caller could change.
  snapshot() {
    const srv = this.server;
    return Object.freeze({
      framesReceived: this.framesReceived,
      framesDrawn: this.framesDrawn,
      fps: this.fps(),
      latencyLastMs: this.lastLatencyMs,
      latencyP50Ms: this.latencyP50(),
      rttMs: this.rttMs,
      blockMs: this.blockMs,
      sentSeq: this.sentSeq,
      ackedSeq: this.ackedSeq,
      clientDropped: this.clientDropped,
      serverDropped: srv ? srv.dropped : null,
      serverFps: srv ? srv.fps : null,
      queuePosition: this.queue ? this.queue.position : null,
      connects: this.connects,
      resets: this.resets,
    });
  }

  // The overlay text: fixed-width lines so that numbers do not jump around.
  overlayText(state) {
    const f = (v, d = 1) => (v == null || !Number.isFinite(v) ? '–' : v.toFixed(d));
    const lines = [];
    if (this.queue) {
      lines.push(`queued       ${this.queue.position} of ${this.queue.length}`);
    }
    lines.push(`fps          ${this.fps()}`);
    lines.push(`input→frame  p50 ${f(this.latencyP50(), 0)} ms · last ${f(this.lastLatencyMs, 0)} ms`);
    lines.push(`round trip   ${f(this.rttMs, 1)} ms`);
    lines.push(`server block ${f(this.blockMs, 1)} ms` +
      (this.server ? ` · p50 ${f(this.server.p50_ms, 0)} · p99 ${f(this.server.p99_ms, 0)} ms` : ''));
    const sd = this.server ? this.server.dropped : null;
    lines.push(`dropped      server ${sd == null ? '–' : sd} · client ${this.clientDropped}`);
    lines.push(`input seq    sent ${this.sentSeq} · acked ${this.ackedSeq}`);
    if (state) lines.push(`state        ${state}`);
    return lines.join('\n');
  }
}
