// diffgraph's saved workflow:
//
//   {"format": "diffgraph-workflow", "version": 1,
//    "api": {API-format graph: what `diffgraph run` and POST /prompt run},
//    "canvas": {"name", "next_id", "nodes": [node…], "groups": [{id, title, bounds: [x, y, w, h], color}],
//               "view": {x, y, zoom}}}
//
// A canvas node keeps widget values by input name (never by position): see graph.js. The layout lives under
// "canvas" (not a top-level "nodes" list) so no reader mistakes the file for ComfyUI's UI format.

import { graphToApi } from "./api_format.js";

export const FORMAT = "diffgraph-workflow";
export const VERSION = 1;

export function buildWorkflowFile(editor) {
  return {
    format: FORMAT,
    version: VERSION,
    api: graphToApi(editor.graph, editor.schema),
    canvas: { ...editor.graph.toJSON(), view: editor.view.toJSON() },
  };
}

export function isWorkflowFile(data) {
  return Boolean(data && typeof data === "object" && data.canvas && Array.isArray(data.canvas.nodes));
}

export function isUiWorkflow(data) {
  return Boolean(data && typeof data === "object" && Array.isArray(data.nodes));
}

/** The node positions of a ComfyUI UI-format file, by node id (its converted graph keeps the ids). */
export function uiPositions(data) {
  const positions = {};
  for (const node of data?.nodes ?? []) {
    const pos = Array.isArray(node.pos) ? node.pos : node.pos && typeof node.pos === "object"
      ? [node.pos[0], node.pos[1]] : null;
    if (pos && Number.isFinite(Number(pos[0]))) positions[String(node.id)] = [Number(pos[0]), Number(pos[1])];
  }
  return positions;
}

/** The groups of a ComfyUI UI-format file, as canvas groups (their colours are free-form: not kept). */
export function uiGroups(data) {
  return (data?.groups ?? []).filter((g) => Array.isArray(g.bounding) && g.bounding.length === 4)
    .map((g, i) => ({ id: `g${i + 1}`, title: String(g.title ?? "Group"), bounds: g.bounding.map(Number), color: null }));
}
