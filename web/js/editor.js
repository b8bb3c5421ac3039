// The editor: the graph model and its drawing kept in step (node views, links, groups), selection, and the
// undo history. Every user edit ends with commit(), which records one undo step and tells listeners ("change").

import { createNode, fillDefaults, Graph } from "./graph.js";
import { GroupsView } from "./groups_view.js";
import { UndoHistory } from "./history.js";
import { LinksView, linkKey } from "./links_view.js";
import { NodeView } from "./node_view.js";
import { typesCompatible } from "./types.js";
import { Viewport } from "./view.js";

/** "sub/name.png [input]" (ComfyUI's annotated form too) → a /view reference in the input folder. */
export function inputImageRef(value) {
  const match = /^(.*?)(?: \[(input|output|temp)\])?$/.exec(String(value));
  const path = match[1];
  const cut = path.lastIndexOf("/");
  return { filename: path.slice(cut + 1), subfolder: cut >= 0 ? path.slice(0, cut) : "", type: match[2] ?? "input" };
}

function sameExceptPosition(a, b) {
  return JSON.stringify({ ...a, pos: null }) === JSON.stringify({ ...b, pos: null });
}

export class Editor extends EventTarget {
  constructor({ canvas, world, schema, api }) {
    super();
    this.canvas = canvas;
    this.schema = schema;
    this.api = api;
    this.graph = new Graph();
    this.views = new Map();
    this.errors = new Map();
    this.nodesLayer = world.querySelector("#nodes");
    this.links = new LinksView(world.querySelector("#links"));
    this.groupsView = new GroupsView(world.querySelector("#groups"));
    this.view = new Viewport(canvas, world, () => this.emit("view"));
    this.history = new UndoHistory();
    this.selection = new Set();
    this.selectedGroup = null;
    this.resizeObserver = new ResizeObserver((entries) => this.onResized(entries));
    this.services = {
      onValue: (node, name, value, final) => {
        node.values[name] = value;
        if (final) this.commit();
        else this.emit("dirty");
      },
      onControl: (node, name, mode) => {
        node.controls[name] = mode;
        this.commit();
      },
      upload: (node, name, file) => this.uploadInto(node.id, name, file),
      thumbUrl: (name) => this.api.viewUrl(inputImageRef(name)),
      title: (node) => this.graph.titleOf(node, this.schema),
      outputCount: (node) => 1 + Math.max(-1, ...[...this.graph.links()].filter((l) => l.fromId === node.id)
        .map((l) => l.slot)),
    };
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // ------------------------------------------------------------------------------------------- whole graph

  snapshot() {
    return JSON.stringify(this.graph.toJSON());
  }

  /** Replaces the graph (a loaded file); starts a fresh undo history unless `keepHistory`. */
  load(data, { view = null, keepHistory = false } = {}) {
    this.graph = Graph.fromJSON(data);
    for (const node of this.graph.nodes.values()) fillDefaults(node, this.schema.get(node.type));
    this.selection.clear();
    this.selectedGroup = null;
    this.errors.clear();
    this.renderAll();
    if (keepHistory) this.commit();
    else this.history.reset(this.snapshot());
    if (view) this.view.set(view);
    else this.fitView();
    this.emit("loaded");
    this.emit("change");
  }

  renderAll() {
    for (const view of this.views.values()) this.resizeObserver.unobserve(view.el);
    this.views.clear();
    this.nodesLayer.replaceChildren();
    const fragment = document.createDocumentFragment();
    for (const node of this.graph.nodes.values()) fragment.append(this.createView(node, false).el);
    this.nodesLayer.append(fragment);
    for (const view of this.views.values()) view.measure();
    this.updateAllLinks();
    this.renderGroups();
  }

  /** Puts the graph back to an undo snapshot, rebuilding only the nodes that differ. */
  restore(snapshot) {
    const next = Graph.fromJSON(JSON.parse(snapshot));
    for (const [id, view] of this.views) {
      if (!next.nodes.has(id)) this.dropView(id, view);
    }
    for (const node of next.nodes.values()) {
      const view = this.views.get(node.id);
      const old = this.graph.get(node.id);
      if (view && old && sameExceptPosition(old, node)) {
        view.node = node;
        view.setPosition();
      } else {
        if (view) this.dropView(node.id, view);
        this.createView(node);
      }
      this.nodesLayer.append(this.views.get(node.id).el);
    }
    this.graph = next;
    for (const id of [...this.selection]) if (!next.nodes.has(id)) this.selection.delete(id);
    this.renderGroups();
    this.updateAllLinks();
    this.emit("change");
  }

  commit() {
    if (this.history.push(this.snapshot())) this.emit("change");
  }

  undo() {
    const snapshot = this.history.undo();
    if (snapshot) this.restore(snapshot);
    return Boolean(snapshot);
  }

  redo() {
    const snapshot = this.history.redo();
    if (snapshot) this.restore(snapshot);
    return Boolean(snapshot);
  }

  // ------------------------------------------------------------------------------------------- node views

  createView(node, attach = true) {
    const view = new NodeView(node, this.schema.get(node.type), this.services);
    view.setSelected(this.selection.has(node.id));
    this.views.set(node.id, view);
    if (attach) this.nodesLayer.append(view.el);
    this.resizeObserver.observe(view.el);
    const errors = this.errors.get(node.id);
    if (errors) view.setErrors(errors);
    this.emit("viewcreated", view);
    return view;
  }

  dropView(id, view) {
    this.resizeObserver.unobserve(view.el);
    view.el.remove();
    this.views.delete(id);
  }

  onResized(entries) {
    const ids = new Set();
    for (const entry of entries) {
      const view = this.views.get(entry.target.dataset.id);
      if (!view) continue;
      view.measure();
      ids.add(view.node.id);
    }
    if (ids.size) this.drawLinks(this.graph.linksTouching(ids));
  }

  /** The view, measured if it was never laid out (a node added in this same task). */
  measured(id) {
    const view = this.views.get(id);
    if (view && view.width === undefined) view.measure();
    return view;
  }

  // ------------------------------------------------------------------------------------------- links

  drawLinks(links) {
    for (const link of links) {
      const from = this.measured(link.fromId);
      const to = this.measured(link.toId);
      if (!from || !to) continue;
      const type = from.outputType(link.slot);
      this.links.set(link.toId, link.input, from.outputAnchor(link.slot), to.inputAnchor(link.input),
        type === "*" ? to.inputType(link.input) : type);
    }
  }

  updateAllLinks() {
    const all = [...this.graph.links()].filter((l) => this.views.has(l.fromId) && this.views.has(l.toId));
    this.drawLinks(all);
    this.links.retain(new Set(all.map((l) => linkKey(l.toId, l.input))));
    const used = new Map();
    for (const link of all) {
      if (!used.has(link.fromId)) used.set(link.fromId, new Set());
      used.get(link.fromId).add(link.slot);
    }
    for (const [id, view] of this.views) view.setOutputLinked(used.get(id) ?? new Set());
  }

  /** Whether `fromId` is downstream of `toId` already (a link between them would close a loop). */
  wouldCycle(fromId, toId) {
    const stack = [fromId];
    const seen = new Set();
    while (stack.length) {
      const id = stack.pop();
      if (id === toId) return true;
      if (seen.has(id)) continue;
      seen.add(id);
      for (const [up] of Object.values(this.graph.get(id)?.links ?? {})) stack.push(up);
    }
    return false;
  }

  /** Why the output cannot feed the input, or null when it can. */
  linkProblem(fromId, slot, toId, input) {
    const from = this.views.get(fromId);
    const to = this.views.get(toId);
    if (!from || !to) return "no such node";
    const outType = from.outputType(slot);
    const inType = to.inputType(input);
    if (!typesCompatible(outType, inType)) return `${outType} can't connect to ${input} (expects ${inType})`;
    if (fromId === toId || this.wouldCycle(fromId, toId)) return "that link would make a loop";
    return null;
  }

  /** Links the output to the input (replacing the input's link); {ok, reason}. */
  connect(fromId, slot, toId, input) {
    const problem = this.linkProblem(fromId, slot, toId, input);
    if (problem) return { ok: false, reason: problem };
    this.graph.connect(fromId, slot, toId, input);
    this.views.get(toId).refresh();
    this.updateAllLinks();
    return { ok: true };
  }

  disconnect(toId, input) {
    this.graph.disconnect(toId, input);
    this.views.get(toId)?.refresh();
    this.links.remove(toId, input);
    this.updateAllLinks();
  }

  // ------------------------------------------------------------------------------------------- nodes

  addNode(type, pos) {
    const def = this.schema.get(type);
    if (!def) throw new Error(`unknown node type ${type}`);
    const node = this.graph.add(createNode(def, this.graph.newId(), pos));
    this.createView(node);
    return node;
  }

  /** Adds already-built node data (a paste); ids must be free. */
  addNodes(nodes) {
    for (const node of nodes) this.createView(this.graph.add(fillDefaults(node, this.schema.get(node.type))));
    this.updateAllLinks();
  }

  removeNodes(ids) {
    for (const id of ids) {
      const view = this.views.get(id);
      if (view) this.dropView(id, view);
      for (const [toId] of this.graph.remove(id)) this.views.get(toId)?.refresh();
      this.selection.delete(id);
      this.errors.delete(id);
    }
    this.updateAllLinks();
  }

  moveNodes(ids, dx, dy, links = null) {
    for (const id of ids) {
      const view = this.views.get(id);
      if (!view) continue;
      view.node.pos[0] += dx;
      view.node.pos[1] += dy;
      view.setPosition();
    }
    this.drawLinks(links ?? this.graph.linksTouching(ids));
  }

  bringToFront(ids) {
    for (const id of ids) {
      this.graph.bringToFront(id);
      const view = this.views.get(id);
      if (view) this.nodesLayer.append(view.el);
    }
  }

  /** World rectangle around the nodes (all by default), from their drawn sizes. */
  bounds(ids = [...this.graph.nodes.keys()]) {
    let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
    for (const id of ids) {
      const view = this.measured(id);
      if (!view) continue;
      const [x, y] = view.node.pos;
      x0 = Math.min(x0, x);
      y0 = Math.min(y0, y);
      x1 = Math.max(x1, x + view.width);
      y1 = Math.max(y1, y + view.height);
    }
    for (const group of ids.length === this.graph.nodes.size ? this.graph.groups : []) {
      const [x, y, w, h] = group.bounds;
      [x0, y0, x1, y1] = [Math.min(x0, x), Math.min(y0, y), Math.max(x1, x + w), Math.max(y1, y + h)];
    }
    return Number.isFinite(x0) ? [x0, y0, x1 - x0, y1 - y0] : null;
  }

  fitView(ids) {
    const box = this.bounds(ids && ids.length ? ids : undefined);
    if (box) this.view.fit(box);
    else this.view.set({ x: 0, y: 0, zoom: 1 });
  }

  // ------------------------------------------------------------------------------------------- selection

  setSelection(ids) {
    const next = new Set(ids);
    for (const id of this.selection) if (!next.has(id)) this.views.get(id)?.setSelected(false);
    for (const id of next) this.views.get(id)?.setSelected(true);
    this.selection = next;
    if (next.size) this.selectGroup(null);
    this.emit("selection");
  }

  toggleSelected(id) {
    const next = new Set(this.selection);
    if (next.has(id)) next.delete(id);
    else next.add(id);
    this.setSelection(next);
  }

  selectGroup(id) {
    this.selectedGroup = id;
    this.renderGroups();
  }

  renderGroups() {
    this.groupsView.render(this.graph.groups, this.selectedGroup);
  }

  // ------------------------------------------------------------------------------------------- errors, images

  /** errors: Map node id → [{message, input?}] (validation or runtime); replaces what was shown. */
  showErrors(errors) {
    for (const id of this.errors.keys()) this.views.get(id)?.setErrors([]);
    this.errors = new Map(errors);
    for (const [id, list] of this.errors) this.views.get(id)?.setErrors(list);
  }

  async uploadInto(id, inputName, file) {
    const stored = await this.api.uploadImage(file);
    const value = stored.subfolder ? `${stored.subfolder}/${stored.name}` : stored.name;
    const node = this.graph.get(id);
    const def = this.schema.get(node?.type);
    const input = def?.inputs.find((i) => i.name === inputName);
    if (input?.choices && !input.choices.includes(value)) {
      input.choices.push(value);
      for (const view of this.views.values()) if (view.def === def) view.setChoices(inputName, input.choices);
    }
    if (!node) return value;
    node.values[inputName] = value;
    this.views.get(id)?.widgets.get(inputName)?.set(value);
    this.commit();
    return value;
  }
}
