// DOM helpers: the banner, the connection badge, the scene chooser and the key legend. No
// protocol or session logic lives here.

import { keyLabel } from './input.js';

export const $ = (id) => document.getElementById(id);

export function setConn(state, text) {
  const el = $('conn');
  el.dataset.state = state;
  el.textContent = text;
}

let bannerTimer = 0;
// kind: 'error' (stays until dismissed or replaced) or 'info' (fades after a while).
export function showBanner(text, kind = 'error', ms = 0) {
  const b = $('banner');
  $('banner-text').textContent = text;
  b.dataset.kind = kind;
  b.hidden = false;
  clearTimeout(bannerTimer);
  if (ms > 0) bannerTimer = setTimeout(hideBanner, ms);
}

export function hideBanner() {
  clearTimeout(bannerTimer);
  $('banner').hidden = true;
}

export function setPlaceholder(text) {
  const p = $('placeholder');
  if (text == null) {
    p.hidden = true;
  } else {
    $('placeholder-text').textContent = text;
    p.hidden = false;
  }
}

// A radio group of scene buttons (roving focus with the arrow keys, like native radios).
export function renderScenes(names, selected, onPick) {
  const box = $('scenes');
  box.replaceChildren();
  if (!names.length) {
    const p = document.createElement('p');
    p.className = 'note';
    p.textContent = 'The server offers no start scenes: upload an image, or play its default.';
    box.append(p);
    return;
  }
  const buttons = names.map((name) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'scene';
    b.setAttribute('role', 'radio');
    b.dataset.scene = name;
    b.textContent = name;
    b.addEventListener('click', () => onPick(name));
    return b;
  });
  box.addEventListener('keydown', (e) => {
    const i = buttons.indexOf(document.activeElement);
    if (i < 0) return;
    const step = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[e.key];
    if (!step) return;
    e.preventDefault();
    const next = buttons[(i + step + buttons.length) % buttons.length];
    next.focus();
    onPick(next.dataset.scene);
  });
  box.append(...buttons);
  markScene(selected);
}

export function markScene(selected) {
  const buttons = [...$('scenes').querySelectorAll('.scene')];
  buttons.forEach((b) => {
    const on = b.dataset.scene === selected;
    b.setAttribute('aria-checked', on ? 'true' : 'false');
    b.tabIndex = on || (selected == null && b === buttons[0]) ? 0 : -1;
  });
}

// bindings from input.bindingsFor; mouse: whether the variant takes the mouse.
export function renderLegend(bindings, mouse) {
  const body = $('legend').tBodies[0];
  body.replaceChildren();
  const row = (keysEl, text, name, codes) => {
    const tr = document.createElement('tr');
    if (name) tr.dataset.name = name;
    if (codes) tr.dataset.codes = codes.join(' ');
    const a = document.createElement('td');
    const b = document.createElement('td');
    if (typeof keysEl === 'string') a.textContent = keysEl;
    else a.append(...keysEl);
    b.textContent = text;
    tr.append(a, b);
    body.append(tr);
  };
  if (!bindings) {
    const tr = document.createElement('tr');
    tr.className = 'empty';
    const td = document.createElement('td');
    td.colSpan = 2;
    td.textContent = 'Keys appear here once a game starts.';
    tr.append(td);
    body.append(tr);
    return;
  }
  for (const b of bindings) {
    const kbds = b.codes.map((c) => {
      const k = document.createElement('kbd');
      k.textContent = keyLabel(c);
      return k;
    });
    row(kbds, b.label, b.name, b.codes);
  }
  if (mouse) {
    const k = document.createElement('kbd');
    k.textContent = 'Mouse';
    const steers = bindings.some((b) => b.steer);
    row([k], `${steers ? 'steering and camera' : 'camera'} (click the view to capture)`, 'mouse');
  }
}

export function markHeld(names) {
  for (const tr of $('legend').tBodies[0].rows) {
    tr.classList.toggle('held', names.has(tr.dataset.name));
  }
}

export function formatBytes(n) {
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(n < 10 << 10 ? 1 : 0)} KiB`;
  return `${n} bytes`;
}
