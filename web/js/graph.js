// The graph model: plain data (nodes, their links by input name, groups), no DOM.
//
// A node: {id, type, title, pos: [x, y], size: [width, minHeight], collapsed, color, mode, values: {input: value},
//          controls: {input: "fixed"|"increment"|"decrement"|"randomize"}, links: {input: [fromId, slot]}}
// One link per input is the model itself: `links` maps each input name to the output feeding it.

import { defaultValue } from "./schema.js";

export const NODE_MODES = ["normal", "muted", "bypass"];
export const CONTROL_MODES = ["fixed", "increment", "decrement", "randomize"];
export const COLORS = ["red", "brown", "green", "blue", "cyan", "purple", "yellow", "black"];

function defaultWidth(def) {
  if (def.inputs.some((i) => i.widget === "textarea")) return 360;
  if (def.inputs.some((i) => i.widget === "image") || def.outputNode) return 300;
  return 270;
}

export function createNode(def, id, pos) {
  const values = {};
  const controls = {};
  for (const input of def.inputs) {
    if (input.widget) values[input.name] = defaultValue(input);
    if (input.hasControl) controls[input.name] = "randomize";
  }
  return {
    id,
    type: def.name,
    title: null,
    pos: [Math.round(pos[0]), Math.round(pos[1])],
    size: [defaultWidth(def), 0],
    collapsed: false,
    color: null,
    mode: "normal",
    values,
    controls,
    links: {},
  };
}

/** Gives widget inputs the file does not mention (e.g. added to the node type since) their defaults. */
export function fillDefaults(node, def) {
  if (!def) return node;
  for (const input of def.inputs) {
    if (input.widget && !(input.name in node.values)) node.values[input.name] = defaultValue(input);
  }
  return node;
}

/** A node from saved data, with every field present and of the right kind. */
export function normalizeNode(raw) {
  const pos = Array.isArray(raw.pos) ? raw.pos : [0, 0];
  const size = Array.isArray(raw.size) ? raw.size : [270, 0];
  return {
    id: String(raw.id),
    type: String(raw.type),
    title: typeof raw.title === "string" && raw.title ? raw.title : null,
    pos: [Number(pos[0]) || 0, Number(pos[1]) || 0],
    size: [Number(size[0]) || 270, Number(size[1]) || 0],
    collapsed: Boolean(raw.collapsed),
    color: COLORS.includes(raw.color) ? raw.color : null,
    mode: NODE_MODES.includes(raw.mode) ? raw.mode : "normal",
    values: { ...(raw.values ?? {}) },
    controls: { ...(raw.controls ?? {}) },
    links: Object.fromEntries(
      Object.entries(raw.links ?? {})
        .filter(([, link]) => Array.isArray(link) && link.length === 2)
        .map(([name, [from, slot]]) => [name, [String(from), Number(slot) || 0]]),
    ),
  };
}

function normalizeGroup(raw, index) {
  const b = Array.isArray(raw.bounds) ? raw.bounds : [0, 0, 400, 300];
  return {
    id: String(raw.id ?? `g${index + 1}`),
    title: typeof raw.title === "string" ? raw.title : "Group",
    bounds: b.slice(0, 4).map((v) => Number(v) || 0),
    color: COLORS.includes(raw.color) ? raw.color : null,
  };
}

export class Graph {
  constructor() {
    this.nodes = new Map();
    this.groups = [];
    this.nextId = 1;
    this.name = "Untitled";
  }

  static fromJSON(data = {}) {
    const graph = new Graph();
    graph.name = typeof data.name === "string" && data.name ? data.name : "Untitled";
    for (const raw of data.nodes ?? []) {
      const node = normalizeNode(raw);
      graph.nodes.set(node.id, node);
    }
    graph.groups = (data.groups ?? []).map(normalizeGroup);
    graph.nextId = Math.max(Number(data.next_id) || 1, ...[...graph.nodes.keys()].map((id) => (Number(id) || 0) + 1));
    return graph;
  }

  toJSON() {
    return {
      name: this.name,
      next_id: this.nextId,
      nodes: [...this.nodes.values()].map((node) => structuredClone(node)),
      groups: this.groups.map((group) => structuredClone(group)),
    };
  }

  newId() {
    while (this.nodes.has(String(this.nextId))) this.nextId += 1;
    return String(this.nextId++);
  }

  newGroupId() {
    let n = this.groups.length + 1;
    while (this.groups.some((g) => g.id === `g${n}`)) n += 1;
    return `g${n}`;
  }

  get(id) {
    return this.nodes.get(String(id));
  }

  add(node) {
    this.nodes.set(node.id, node);
    return node;
  }

  /** Removes the node and every link out of it; returns the inputs that lost their link. */
  remove(id) {
    this.nodes.delete(id);
    const cut = [];
    for (const node of this.nodes.values()) {
      for (const [input, [from]] of Object.entries(node.links)) {
        if (from === id) {
          delete node.links[input];
          cut.push([node.id, input]);
        }
      }
    }
    return cut;
  }

  *links() {
    for (const node of this.nodes.values()) {
      for (const [input, [fromId, slot]] of Object.entries(node.links)) {
        yield { toId: node.id, input, fromId, slot };
      }
    }
  }

  /** Links into or out of any of the nodes. */
  linksTouching(ids) {
    const set = ids instanceof Set ? ids : new Set(ids);
    return [...this.links()].filter((link) => set.has(link.toId) || set.has(link.fromId));
  }

  connect(fromId, slot, toId, input) {
    this.get(toId).links[input] = [fromId, slot];
  }

  disconnect(toId, input) {
    delete this.get(toId).links[input];
  }

  /** Moves the node to the end of the drawing order (on top). */
  bringToFront(id) {
    const node = this.nodes.get(id);
    if (!node) return;
    this.nodes.delete(id);
    this.nodes.set(id, node);
  }

  titleOf(node, schema) {
    return node.title ?? schema.get(node.type)?.displayName ?? node.type;
  }
}
