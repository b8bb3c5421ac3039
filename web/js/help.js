// The help dialog: every shortcut and mouse gesture, from the same table the keyboard handler uses.

import { MOUSE_HELP, SHORTCUTS } from "./keyboard.js";
import { closePopup, openPopup } from "./popup.js";

function table(rows) {
  const t = document.createElement("table");
  for (const [keys, what] of rows) {
    const tr = document.createElement("tr");
    const a = document.createElement("td");
    const b = document.createElement("td");
    a.textContent = keys;
    b.textContent = what;
    tr.append(a, b);
    t.append(tr);
  }
  return t;
}

export function showHelp() {
  const box = document.createElement("div");
  box.className = "dialog help";
  const title = document.createElement("h2");
  title.textContent = "Keyboard and mouse";
  const keys = document.createElement("h4");
  keys.textContent = "Keys";
  const mouse = document.createElement("h4");
  mouse.textContent = "Mouse";
  const actions = document.createElement("div");
  actions.className = "actions";
  const ok = document.createElement("button");
  ok.className = "primary";
  ok.textContent = "Close";
  ok.addEventListener("click", closePopup);
  actions.append(ok);
  box.append(title, keys, table(SHORTCUTS.map((s) => [s.keys.join(" / "), s.help])), mouse, table(MOUSE_HELP), actions);
  openPopup(box);
}
