// Widgets: native form controls for a node's constant inputs. Each factory returns {el, set(value)} and reports
// edits through `onChange(value, final)`: `final` is false while typing or scrubbing, true when the edit is done
// (that is when the editor records an undo step).

import { CONTROL_MODES } from "./graph.js";

const SCRUB_PIXELS_PER_STEP = 6;
const SCRUB_THRESHOLD = 3;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function decimals(x) {
  const text = String(x);
  if (text.includes("e-")) return Number(text.split("e-")[1]);
  return text.includes(".") ? text.split(".")[1].length : 0;
}

function numberStep(input) {
  return Number(input.opts.step) || (input.type === "INT" ? 1 : 0.01);
}

/** A typed or scrubbed number made valid: within min/max, an integer on INT's step grid, FLOAT rounded. */
export function clampNumber(input, raw) {
  let value = typeof raw === "number" ? raw : Number(String(raw).trim());
  if (!Number.isFinite(value)) return null;
  const min = Number.isFinite(input.opts.min) ? input.opts.min : -Number.MAX_SAFE_INTEGER;
  const max = Number.isFinite(input.opts.max) ? Math.min(input.opts.max, Number.MAX_SAFE_INTEGER) : Number.MAX_SAFE_INTEGER;
  value = Math.min(Math.max(value, min), max);
  if (input.type === "INT") {
    const step = Math.max(1, Math.round(numberStep(input)));
    const base = min > -Number.MAX_SAFE_INTEGER ? min : 0;
    value = base + Math.round((value - base) / step) * step;
    if (value > max) value -= step;
    return Math.round(value);
  }
  const round = Number(input.opts.round) || 0;
  if (round > 0) value = Math.round(value / round) * round;
  return Number(value.toFixed(Math.min(10, Math.max(decimals(round || numberStep(input)), 4))));
}

function formatNumber(input, value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "—";
  if (input.type === "INT") return String(value);
  const shown = Math.max(decimals(Number(input.opts.round) || numberStep(input)), 1);
  return Number(value).toFixed(Math.min(6, Math.max(shown, decimals(value))));
}

function numberWidget(input, value, onChange) {
  const root = el("div", "widget w-number");
  const dec = el("button", "w-arrow", "‹");
  const inc = el("button", "w-arrow", "›");
  dec.tabIndex = inc.tabIndex = -1;
  dec.title = inc.title = `step ${numberStep(input)}`;
  const label = el("span", "w-label", input.name);
  const shown = el("span", "w-value");
  const edit = el("input", "w-edit");
  edit.type = "text";
  edit.inputMode = "decimal";
  edit.hidden = true;
  edit.setAttribute("aria-label", input.name);
  root.append(dec, label, shown, edit, inc);
  root.title = input.tooltip;
  let current = value;

  const set = (v) => {
    current = v;
    shown.textContent = formatNumber(input, v);
  };
  const commit = (v, final = true) => {
    const clamped = clampNumber(input, v);
    if (clamped === null) return;
    set(clamped);
    onChange(clamped, final);
  };
  const stepBy = (n) => commit(current + n * numberStep(input));
  dec.addEventListener("click", () => stepBy(-1));
  inc.addEventListener("click", () => stepBy(1));

  const openEditor = () => {
    edit.hidden = false;
    label.hidden = shown.hidden = true;
    edit.value = formatNumber(input, current);
    edit.focus();
    edit.select();
  };
  const closeEditor = (apply) => {
    if (edit.hidden) return;
    edit.hidden = true;
    label.hidden = shown.hidden = false;
    if (apply) commit(edit.value);
  };
  edit.addEventListener("keydown", (event) => {
    event.stopPropagation();
    if (event.key === "Enter") closeEditor(true);
    else if (event.key === "Escape") closeEditor(false);
    else if (event.key === "ArrowUp" || event.key === "ArrowDown") {
      event.preventDefault();
      const next = clampNumber(input, (clampNumber(input, edit.value) ?? current) +
        (event.key === "ArrowUp" ? 1 : -1) * numberStep(input));
      if (next !== null) edit.value = formatNumber(input, next);
    }
  });
  edit.addEventListener("blur", () => closeEditor(true));

  // Drag sideways to scrub; a click without movement opens the typed entry.
  root.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 || event.target.closest(".w-arrow") || !edit.hidden) return;
    event.preventDefault();
    const startX = event.clientX;
    const startValue = current;
    let scrubbing = false;
    root.setPointerCapture(event.pointerId);
    const move = (e) => {
      const dx = e.clientX - startX;
      if (!scrubbing && Math.abs(dx) < SCRUB_THRESHOLD) return;
      scrubbing = true;
      const steps = Math.round(dx / (e.shiftKey ? SCRUB_PIXELS_PER_STEP * 10 : SCRUB_PIXELS_PER_STEP));
      commit(startValue + steps * numberStep(input), false);
    };
    const up = () => {
      root.removeEventListener("pointermove", move);
      root.removeEventListener("pointerup", up);
      root.removeEventListener("pointercancel", up);
      if (scrubbing) onChange(current, true);
      else openEditor();
    };
    root.addEventListener("pointermove", move);
    root.addEventListener("pointerup", up);
    root.addEventListener("pointercancel", up);
  });
  set(value);
  return { el: root, set };
}

function fillOptions(select, choices, value) {
  select.replaceChildren();
  const known = choices.includes(String(value));
  for (const choice of choices) select.append(new Option(choice, choice));
  if (!known && value !== undefined && value !== null && value !== "") {
    select.append(new Option(`${value} (missing)`, String(value)));
  }
  select.value = String(value ?? "");
  select.parentElement?.classList.toggle("missing", !known);
}

function comboWidget(input, value, onChange) {
  const root = el("label", "widget w-combo");
  const label = el("span", "w-label", input.name);
  const select = el("select");
  select.setAttribute("aria-label", input.name);
  root.append(label, select, el("span", "w-caret", "▾"));
  root.title = input.tooltip;
  let choices = input.choices ?? [];
  const set = (v) => fillOptions(select, choices, v);
  select.addEventListener("change", () => {
    set(select.value);
    onChange(select.value, true);
  });
  set(value);
  return {
    el: root,
    set,
    setChoices(next) {
      choices = next;
      set(select.value);
    },
  };
}

function textWidget(input, value, onChange) {
  const root = el("label", "widget w-text");
  const label = el("span", "w-label", input.name);
  const field = el("input");
  field.type = "text";
  field.spellcheck = false;
  field.setAttribute("aria-label", input.name);
  root.append(label, field);
  root.title = input.tooltip;
  field.value = value ?? "";
  field.addEventListener("input", () => onChange(field.value, false));
  field.addEventListener("change", () => onChange(field.value, true));
  return { el: root, set: (v) => (field.value = v ?? "") };
}

function textareaWidget(input, value, onChange) {
  const root = el("div", "widget w-textarea");
  const area = el("textarea");
  area.placeholder = input.name;
  area.spellcheck = false;
  area.setAttribute("aria-label", input.name);
  area.value = value ?? "";
  root.append(area);
  root.title = input.tooltip;
  area.addEventListener("input", () => onChange(area.value, false));
  area.addEventListener("change", () => onChange(area.value, true));
  return { el: root, set: (v) => (area.value = v ?? "") };
}

function toggleWidget(input, value, onChange) {
  const root = el("label", "widget w-toggle");
  const label = el("span", "w-label", input.name);
  const box = el("input");
  box.type = "checkbox";
  box.setAttribute("aria-label", input.name);
  box.checked = Boolean(value);
  root.append(label, box);
  root.title = input.tooltip;
  box.addEventListener("change", () => onChange(box.checked, true));
  return { el: root, set: (v) => (box.checked = Boolean(v)) };
}

/** The seed's companion: what happens to the value after each queued run. */
export function controlWidget(mode, onChange) {
  const root = el("label", "widget w-combo w-control");
  const label = el("span", "w-label", "control after generate");
  const select = el("select");
  select.setAttribute("aria-label", "control after generate");
  for (const choice of CONTROL_MODES) select.append(new Option(choice, choice));
  select.value = mode;
  root.append(label, select, el("span", "w-caret", "▾"));
  select.addEventListener("change", () => onChange(select.value, true));
  return { el: root, set: (v) => (select.value = v) };
}

/** A file in the input folder: a combo, an upload button and a thumbnail. `upload(file)` → stored name. */
function imageWidget(input, value, onChange, { upload, thumbUrl }) {
  const root = el("div", "w-image");
  const combo = comboWidget(input, value, (v, final) => {
    showThumb(v);
    onChange(v, final);
  });
  const row = el("div", "upload-row");
  const button = el("button", "", "Upload…");
  button.title = "Upload an image (or drop one on the node, or paste with the node selected)";
  const picker = el("input");
  picker.type = "file";
  picker.accept = "image/*";
  picker.hidden = true;
  const thumb = el("img", "thumb");
  thumb.alt = "";
  thumb.draggable = false;
  thumb.hidden = true;
  row.append(combo.el, button);
  root.append(row, picker, thumb);
  const showThumb = (name) => {
    thumb.hidden = !name;
    if (name) thumb.src = thumbUrl(name);
  };
  button.addEventListener("click", () => picker.click());
  picker.addEventListener("change", async () => {
    const file = picker.files?.[0];
    picker.value = "";
    if (file) await upload(file);
  });
  showThumb(value);
  return {
    el: root,
    set(v) {
      combo.set(v);
      showThumb(v);
    },
    setChoices: combo.setChoices,
  };
}

const FACTORIES = {
  int: numberWidget,
  float: numberWidget,
  combo: comboWidget,
  text: textWidget,
  textarea: textareaWidget,
  toggle: toggleWidget,
  image: imageWidget,
};

export function createWidget(input, value, onChange, services) {
  return FACTORIES[input.widget](input, value, onChange, services);
}
