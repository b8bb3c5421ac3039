// One node drawn as DOM: header, sockets, widgets, images, errors. It knows where its sockets are (measured once
// per layout change, in node-local pixels) so links can be drawn without touching the DOM again.

import { typeColor } from "./types.js";
import { controlWidget, createWidget } from "./widgets.js";

const HEADER_HEIGHT = 30;
const PAD = 8; // the .node box's margin around its visible frame (see nodes.css)
const SMALL_IMAGE = 128;
const TITLE_CHAR_WIDTH = 7.4; // px per character of the 13 px semibold title, roughly

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function offsetWithin(child, ancestor) {
  let x = 0;
  let y = 0;
  for (let node = child; node && node !== ancestor; node = node.offsetParent) {
    x += node.offsetLeft;
    y += node.offsetTop;
  }
  return [x + child.offsetWidth / 2, y + child.offsetHeight / 2];
}

function dot(type) {
  const d = el("span", "dot");
  d.style.setProperty("--c", typeColor(type));
  return d;
}

/** Sockets of a node whose type the server does not know: whatever its links use. */
function placeholderDef(node, outputCount) {
  return {
    name: node.type,
    displayName: `${node.type} (not installed)`,
    category: "",
    description: "",
    outputNode: false,
    inputs: Object.keys(node.links).map((name) => ({ name, type: "*", optional: false, opts: {}, widget: null })),
    outputs: Array.from({ length: outputCount }, (_, i) => ({ type: "*", name: `output ${i}` })),
    missing: true,
  };
}

export class NodeView {
  /**
   * services: {onValue(node, name, value, final), onControl(node, name, mode), upload(node, name, file),
   *            thumbUrl(name), title(node), outputCount(node)}
   */
  constructor(node, def, services) {
    this.node = node;
    this.def = def ?? placeholderDef(node, services.outputCount(node));
    this.services = services;
    this.inputDots = new Map();
    this.outputDots = [];
    this.rows = new Map();
    this.widgets = new Map();
    this.anchors = { inputs: new Map(), outputs: [] };
    this.build();
  }

  build() {
    const { node, def } = this;
    const root = el("div", "node");
    root.dataset.id = node.id;
    if (def.missing) root.classList.add("missing");
    const header = el("div", "node-header");
    const collapse = el("span", "node-collapse", "▾");
    collapse.title = "Collapse (Alt+C)";
    this.titleEl = el("span", "node-title");
    this.badge = el("span", "node-badge");
    header.append(collapse, this.titleEl, this.badge);
    header.title = def.description ? `${def.displayName} — ${def.description}` : def.displayName;
    const progress = el("div", "node-progress");
    this.progressBar = el("div");
    progress.append(this.progressBar);
    const body = el("div", "node-body");
    body.append(this.buildSlots(), this.buildWidgets());
    this.mediaEl = el("div", "node-media");
    this.errorsEl = el("div", "node-errors");
    body.append(this.mediaEl, this.errorsEl);
    if (def.missing) this.errorsEl.textContent = `The server has no node type "${node.type}".`;
    this.frame = el("div", "node-frame");
    this.frame.append(header, progress, body, el("div", "node-resize"));
    root.append(this.frame);
    this.el = root;
    this.refresh();
  }

  buildSlots() {
    const slots = el("div", "node-slots");
    const inputs = el("div", "slot-col inputs");
    const outputs = el("div", "slot-col outputs");
    for (const input of this.def.inputs.filter((i) => !i.widget)) {
      const row = el("div", `slot in${input.optional ? " optional" : ""}`);
      row.dataset.input = input.name;
      row.title = `${input.type}${input.tooltip ? ` — ${input.tooltip}` : ""}`;
      const d = dot(input.type);
      row.append(d, el("span", "slot-label", input.name));
      inputs.append(row);
      this.inputDots.set(input.name, d);
      this.rows.set(input.name, row);
    }
    this.def.outputs.forEach((output, slot) => {
      const row = el("div", "slot out");
      row.dataset.slot = String(slot);
      row.title = `${output.type}${output.tooltip ? ` — ${output.tooltip}` : ""}`;
      const d = dot(output.type);
      row.append(el("span", "slot-label", output.name), d);
      outputs.append(row);
      this.outputDots.push(d);
    });
    slots.append(inputs, outputs);
    return slots;
  }

  buildWidgets() {
    const box = el("div", "node-widgets");
    const { node, services } = this;
    // Handlers read this.node, not `node`: an undo may swap in a fresh data object for the same view.
    for (const input of this.def.inputs.filter((i) => i.widget)) {
      const row = el("div", `widget-row${input.widget === "textarea" ? " grow" : ""}`);
      row.dataset.input = input.name;
      const d = dot(input.type);
      d.title = `${input.name}: ${input.type} (a link can feed it)`;
      const note = el("div", "linked-note", `${input.name} ← linked`);
      const widget = createWidget(input, node.values[input.name], (value, final) =>
        services.onValue(this.node, input.name, value, final), {
        upload: (file) => services.upload(this.node, input.name, file),
        thumbUrl: services.thumbUrl,
      });
      widget.el.classList.add("widget-main");
      const stack = el("div", "widget-stack");
      stack.append(widget.el, note);
      row.append(d, stack);
      if (input.hasControl) {
        const control = controlWidget(node.controls[input.name] ?? "fixed", (mode) =>
          services.onControl(this.node, input.name, mode));
        stack.append(control.el);
        widget.control = control;
      }
      box.append(row);
      this.inputDots.set(input.name, d);
      this.rows.set(input.name, row);
      this.widgets.set(input.name, widget);
    }
    return box;
  }

  /** Title, colour, mode, collapsed state, size and link marks from the node's data. */
  refresh() {
    const { node, el: root } = this;
    const title = this.services.title(node);
    const room = Math.max(8, Math.floor((node.size[0] - 64) / TITLE_CHAR_WIDTH));
    this.titleEl.textContent = title.length > room ? `${title.slice(0, room - 1)}…` : title;
    this.titleEl.title = title;
    root.classList.toggle("collapsed", node.collapsed);
    root.classList.toggle("muted", node.mode === "muted");
    root.classList.toggle("bypass", node.mode === "bypass");
    this.badge.textContent = node.mode === "normal" ? "" : node.mode;
    for (const cls of [...root.classList]) if (cls.startsWith("color-")) root.classList.remove(cls);
    if (node.color) root.classList.add(`color-${node.color}`);
    this.frame.style.width = node.collapsed ? "" : `${node.size[0]}px`;
    this.frame.style.minHeight = node.collapsed || !node.size[1] ? "" : `${node.size[1]}px`;
    for (const [name, d] of this.inputDots) {
      const linked = Boolean(node.links[name]);
      d.classList.toggle("linked", linked);
      this.rows.get(name)?.classList.toggle("linked", linked);
    }
    this.setPosition();
  }

  setOutputLinked(slots) {
    this.outputDots.forEach((d, slot) => d.classList.toggle("linked", slots.has(slot)));
  }

  /** Puts widget values back from the data (after an undo, a paste, a control-after-generate). */
  syncValues() {
    for (const [name, widget] of this.widgets) {
      widget.set(this.node.values[name]);
      widget.control?.set(this.node.controls[name] ?? "fixed");
    }
  }

  // left/top rather than a transform: a transform per node would give Blink 300 property nodes to layerize on
  // every frame of a pan.
  setPosition() {
    const [x, y] = this.node.pos;
    this.el.style.left = `${x - PAD}px`;
    this.el.style.top = `${y - PAD}px`;
  }

  setSelected(selected) {
    this.el.classList.toggle("selected", selected);
  }

  /** Socket centres relative to the frame's corner (the node's position); reads layout, so call it in batches. */
  measure() {
    const root = this.el;
    this.width = this.frame.offsetWidth;
    this.height = this.frame.offsetHeight;
    const collapsed = this.node.collapsed;
    const local = (d) => {
      const [x, y] = offsetWithin(d, root);
      return [x - PAD, y - PAD];
    };
    for (const [name, d] of this.inputDots) {
      this.anchors.inputs.set(name, collapsed ? [0, HEADER_HEIGHT / 2] : local(d));
    }
    this.anchors.outputs = this.outputDots.map((d) => (collapsed ? [this.width, HEADER_HEIGHT / 2] : local(d)));
  }

  inputAnchor(name) {
    const local = this.anchors.inputs.get(name) ?? [0, HEADER_HEIGHT / 2];
    return [this.node.pos[0] + local[0], this.node.pos[1] + local[1]];
  }

  outputAnchor(slot) {
    const local = this.anchors.outputs[slot] ?? [this.width ?? 0, HEADER_HEIGHT / 2];
    return [this.node.pos[0] + local[0], this.node.pos[1] + local[1]];
  }

  inputType(name) {
    return this.def.inputs.find((i) => i.name === name)?.type ?? "*";
  }

  outputType(slot) {
    return this.def.outputs[slot]?.type ?? "*";
  }

  setChoices(name, choices) {
    this.widgets.get(name)?.setChoices?.(choices);
  }

  // ----------------------------------------------------------------------------------------- running state

  setRunning(running) {
    this.el.classList.toggle("running", running);
  }

  setCached(cached) {
    this.el.classList.toggle("cached", cached);
  }

  setProgress(value, max) {
    this.progressBar.style.width = max > 0 ? `${Math.min(100, (100 * value) / max)}%` : "0";
  }

  /** Shows images (URLs); a live sampler preview is one image with a caption. */
  setImages(urls, caption = "") {
    this.mediaEl.replaceChildren();
    if (!urls.length) return;
    const main = el("img", caption === "live preview" ? "main preview" : "main");
    main.alt = caption || "output";
    main.draggable = false;
    main.addEventListener("load", () => {
      main.classList.toggle("pixelated", main.naturalWidth < SMALL_IMAGE);
    });
    main.src = urls[0];
    this.mediaEl.append(main);
    if (urls.length > 1) {
      const strip = el("div", "strip");
      urls.forEach((url, i) => {
        const thumb = el("img", i === 0 ? "current" : "");
        thumb.src = url;
        thumb.addEventListener("click", () => {
          main.src = url;
          strip.querySelector(".current")?.classList.remove("current");
          thumb.classList.add("current");
        });
        strip.append(thumb);
      });
      this.mediaEl.append(strip);
    }
    if (caption) this.mediaEl.append(el("div", "caption", caption));
  }

  /** errors: [{message, input?}] — shown in the node, the named inputs marked. */
  setErrors(errors) {
    this.el.classList.toggle("has-error", errors.length > 0);
    for (const row of this.rows.values()) {
      row.classList.remove("has-error");
      row.querySelector(".widget-error")?.remove();
    }
    this.errorsEl.replaceChildren();
    for (const error of errors) {
      const row = error.input ? this.rows.get(error.input) : null;
      if (row) {
        row.classList.add("has-error");
        row.title = error.message;
        if (row.classList.contains("widget-row")) row.lastChild.append(el("div", "widget-error", error.message));
      }
      const named = !error.input || error.message.includes(error.input);
      const line = el("div", "", named ? error.message : `${error.input}: ${error.message}`);
      if (!row || !row.classList.contains("widget-row")) this.errorsEl.append(line);
    }
  }
}
