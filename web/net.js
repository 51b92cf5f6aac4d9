// One websocket to the server's /ws. Messages are built and parsed only by proto.js; this file
// owns the socket's life (open, send, close reasons) and the reconnect back-off schedule, not the
// session logic, which is app.js's.

import * as proto from './proto.js';

// Largest JPEG frame accepted (a 640×352 frame is tens of KiB; this only bounds a broken server).
const MAX_FRAME_BYTES = 16 << 20;

export function wsUrl(loc = window.location) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${loc.host}/ws`;
}

export class Connection {
  // handlers: onOpen(), onMessage(msg), onBadMessage(err), onClose({code, reason, clean})
  constructor(url, handlers) {
    this.url = url;
    this.h = handlers;
    this.ws = null;
  }

  get open() { return !!this.ws && this.ws.readyState === WebSocket.OPEN; }

  connect() {
    this.disconnect();
    const ws = new WebSocket(this.url);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onopen = () => { if (this.ws === ws) this.h.onOpen(); };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      if (!(ev.data instanceof ArrayBuffer)) {
        this.h.onBadMessage(new Error('text frame from the server (the protocol is binary)'));
        return;
      }
      let msg;
      try {
        msg = proto.decode(new Uint8Array(ev.data), { maxBytes: MAX_FRAME_BYTES });
      } catch (err) {
        this.h.onBadMessage(err);
        return;
      }
      this.h.onMessage(msg);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.h.onClose({ code: ev.code, reason: ev.reason, clean: ev.wasClean });
    };
    // onerror is always followed by onclose, which carries what we can know.
    ws.onerror = () => {};
  }

  // Returns false when the socket is not open (the message is dropped, not queued: stale input
  // or pings are worthless after a reconnect).
  send(msg) {
    if (!this.open) return false;
    this.ws.send(proto.encode(msg));
    return true;
  }

  bufferedAmount() { return this.ws ? this.ws.bufferedAmount : 0; }

  // Closes; onClose follows as for a close by the server.
  close(code = 1000, reason = '') {
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(code, reason);
  }

  // Closes without reporting onClose (the caller is replacing the socket).
  disconnect(code = 1000, reason = '') {
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(code, reason);
  }
}

// Exponential back-off with jitter: 0.5 s, 1 s, 2 s … capped at 15 s.
export function backoffMs(attempt) {
  const base = Math.min(15000, 500 * 2 ** Math.min(attempt, 5));
  return Math.round(base * (0.75 + Math.random() * 0.5));
}
