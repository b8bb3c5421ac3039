// Short messages at the bottom of the screen, and hints next to the pointer (e.g. a refused link).

const root = () => document.getElementById("toasts");

export function toast(message, { kind = "info", timeout = 4000 } = {}) {
  const el = document.createElement("div");
  el.className = `toast ${kind}`;
  el.textContent = message;
  root().append(el);
  setTimeout(() => el.remove(), timeout);
  return el;
}

let hintEl = null;
let hintTimer = 0;

export function hint(message, clientX, clientY, timeout = 2200) {
  hintEl?.remove();
  hintEl = document.createElement("div");
  hintEl.className = "hint";
  hintEl.textContent = message;
  hintEl.style.left = `${clientX + 14}px`;
  hintEl.style.top = `${clientY + 12}px`;
  document.body.append(hintEl);
  clearTimeout(hintTimer);
  const el = hintEl;
  hintTimer = setTimeout(() => el.remove(), timeout);
  return el;
}
