// The canvas graph ↔ ComfyUI's API format ({id: {class_type, inputs, _meta}}), which is what the server runs.

import { createNode, Graph, normalizeNode } from "./graph.js";
import { autoLayout } from "./layout.js";
import { typesCompatible } from "./types.js";

export function isLink(value) {
  return Array.isArray(value) && value.length === 2 && (typeof value[0] === "string" || Number.isInteger(value[0]))
    && Number.isInteger(value[1]);
}

function wrapValue(value) {
  return Array.isArray(value) ? { __value__: value } : value;
}

function unwrapValue(value) {
  return value && typeof value === "object" && !Array.isArray(value) && "__value__" in value ? value.__value__ : value;
}

function outputType(graph, schema, fromId, slot) {
  const node = graph.get(fromId);
  return node ? schema.get(node.type)?.outputs[slot]?.type : undefined;
}

/** Where a link really comes from: muted sources give nothing, bypassed ones pass a same-typed input through. */
function resolveSource(graph, schema, link, seen = new Set()) {
  const [fromId, slot] = link;
  const source = graph.get(fromId);
  if (!source || source.mode === "normal") return [fromId, slot];
  if (source.mode === "muted" || seen.has(fromId)) return null;
  seen.add(fromId);
  const wanted = outputType(graph, schema, fromId, slot);
  const def = schema.get(source.type);
  for (const input of def?.inputs ?? []) {
    const upstream = source.links[input.name];
    if (upstream && wanted && typesCompatible(input.type, wanted)) return resolveSource(graph, schema, upstream, seen);
  }
  return null;
}

function inputNames(node, def) {
  if (def) return def.inputs.map((input) => input.name);
  return [...new Set([...Object.keys(node.values), ...Object.keys(node.links)])];
}

/** The API-format prompt for every node that is not muted or bypassed. */
export function graphToApi(graph, schema) {
  const prompt = {};
  for (const node of graph.nodes.values()) {
    if (node.mode !== "normal") continue;
    const def = schema.get(node.type);
    const inputs = {};
    for (const name of inputNames(node, def)) {
      if (node.links[name]) {
        const source = resolveSource(graph, schema, node.links[name]);
        if (source) inputs[name] = source;
      } else if (name in node.values) {
        inputs[name] = wrapValue(node.values[name]);
      }
    }
    prompt[node.id] = { class_type: node.type, inputs, _meta: { title: graph.titleOf(node, schema) } };
  }
  return prompt;
}

/** Whether a parsed JSON value is an API-format graph. */
export function looksLikeApi(data) {
  if (!data || typeof data !== "object" || Array.isArray(data)) return false;
  const entries = Object.values(data);
  return entries.length > 0 && entries.every((n) => n && typeof n === "object" && typeof n.class_type === "string");
}

/**
 * A canvas graph from an API-format prompt. `positions` (id → [x, y]) places the nodes it names; the rest are
 * laid out in columns by their depth in the graph. Seeds are imported "fixed" so the file reproduces its image.
 */
export function apiToGraph(api, schema, { positions = {}, name = "Imported" } = {}) {
  const graph = new Graph();
  graph.name = name;
  const warnings = [];
  for (const [id, entry] of Object.entries(api)) {
    const type = schema.canonical(entry.class_type);
    const def = schema.get(type);
    const node = def ? createNode(def, String(id), [0, 0]) : normalizeNode({ id, type });
    if (!def) warnings.push(`node ${id}: unknown node type ${entry.class_type}`);
    for (const key of Object.keys(node.controls)) node.controls[key] = "fixed";
    for (const [input, value] of Object.entries(entry.inputs ?? {})) {
      if (def && !def.inputs.some((i) => i.name === input)) {
        warnings.push(`node ${id} (${type}): input '${input}' is not an input of this node; ignored`);
        continue;
      }
      if (isLink(value)) node.links[input] = [String(value[0]), value[1]];
      else node.values[input] = unwrapValue(value);
    }
    const title = entry._meta?.title;
    if (title && title !== (def?.displayName ?? type)) node.title = title;
    graph.add(node);
  }
  graph.nextId = Math.max(1, ...[...graph.nodes.keys()].map((id) => (Number(id) || 0) + 1));
  const unplaced = [];
  for (const node of graph.nodes.values()) {
    const pos = positions[node.id];
    if (pos) node.pos = [pos[0], pos[1]];
    else unplaced.push(node.id);
  }
  if (unplaced.length) autoLayout(graph, schema, unplaced);
  return { graph, warnings };
}
