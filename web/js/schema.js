// Node definitions read from GET /object_info (ComfyUI's shape), so new nodes need no front-end code.

import { typesCompatible } from "./types.js";

const PRIMITIVE_WIDGETS = { INT: "int", FLOAT: "float", STRING: "text", BOOLEAN: "toggle" };
export const PRIMITIVE_TYPES = new Set([...Object.keys(PRIMITIVE_WIDGETS), "COMBO"]);

function widgetKind(type, opts, choices) {
  if (opts.forceInput) return null;
  if (choices) return opts.image_upload ? "image" : "combo";
  if (type === "STRING" && opts.multiline) return "textarea";
  return PRIMITIVE_WIDGETS[type] ?? null;
}

/** One input: a link-only socket (widget null) or a widget that a link may also feed. */
function parseInput(name, spec, optional) {
  const [head, rawOpts] = Array.isArray(spec) ? spec : [spec, {}];
  const opts = rawOpts && typeof rawOpts === "object" ? rawOpts : {};
  let type = head;
  let choices = null;
  if (Array.isArray(head)) {
    type = "COMBO";
    choices = head.map(String);
  } else if (head === "COMBO") {
    choices = (opts.options ?? []).map(String);
  }
  return {
    name,
    type: String(type),
    optional,
    opts,
    choices,
    widget: widgetKind(type, opts, choices),
    tooltip: opts.tooltip ?? "",
    hasControl: Boolean(opts.control_after_generate),
  };
}

function orderedNames(section, order) {
  const names = Object.keys(section ?? {});
  if (!Array.isArray(order)) return names;
  return [...order.filter((n) => names.includes(n)), ...names.filter((n) => !order.includes(n))];
}

function parseDef(name, info) {
  const input = info.input ?? {};
  const order = info.input_order ?? {};
  const inputs = [
    ...orderedNames(input.required, order.required).map((n) => parseInput(n, input.required[n], false)),
    ...orderedNames(input.optional, order.optional).map((n) => parseInput(n, input.optional[n], true)),
  ];
  const outputTypes = info.output ?? [];
  const outputs = outputTypes.map((type, i) => ({
    type: Array.isArray(type) ? "COMBO" : String(type),
    name: info.output_name?.[i] ?? String(type),
    tooltip: info.output_tooltips?.[i] ?? "",
  }));
  return {
    name,
    displayName: info.display_name || name,
    category: info.category || "other",
    description: info.description || "",
    outputNode: Boolean(info.output_node),
    aliases: Array.isArray(info.aliases) ? info.aliases : [],
    inputs,
    outputs,
  };
}

export class Schema {
  constructor(objectInfo = {}) {
    this.defs = new Map();
    this.aliases = new Map();
    for (const [name, info] of Object.entries(objectInfo)) {
      const def = parseDef(name, info);
      this.defs.set(name, def);
      for (const alias of def.aliases) this.aliases.set(alias, name);
    }
  }

  /** The definition for a type name or one of its aliases (ComfyUI's names for our nodes). */
  get(type) {
    return this.defs.get(type) ?? this.defs.get(this.aliases.get(type)) ?? null;
  }

  canonical(type) {
    return this.defs.has(type) ? type : (this.aliases.get(type) ?? type);
  }

  all() {
    return [...this.defs.values()];
  }

  /** Nodes with an input a link of `type` can feed (the first such input is returned too). */
  acceptors(type) {
    const found = [];
    for (const def of this.defs.values()) {
      const input = def.inputs.find((i) => typesCompatible(type, i.type));
      if (input) found.push({ def, input });
    }
    return found;
  }

  /** Nodes with an output that can feed an input of `type`. */
  producers(type) {
    const found = [];
    for (const def of this.defs.values()) {
      const slot = def.outputs.findIndex((o) => typesCompatible(o.type, type));
      if (slot >= 0) found.push({ def, slot });
    }
    return found;
  }

  /** {name, children: Map, defs: []} by category path ("image/upscaling"). */
  categoryTree() {
    const root = { name: "", children: new Map(), defs: [] };
    for (const def of this.defs.values()) {
      let branch = root;
      for (const part of def.category.split("/").filter(Boolean)) {
        if (!branch.children.has(part)) branch.children.set(part, { name: part, children: new Map(), defs: [] });
        branch = branch.children.get(part);
      }
      branch.defs.push(def);
    }
    return root;
  }
}

/** The starting value of a widget input. */
export function defaultValue(input) {
  const { opts, choices } = input;
  if (opts.default !== undefined && (!choices || choices.includes(String(opts.default)))) return opts.default;
  if (choices) return choices[0] ?? "";
  switch (input.type) {
    case "INT":
    case "FLOAT":
      return Math.min(Math.max(0, opts.min ?? 0), opts.max ?? Infinity);
    case "BOOLEAN":
      return false;
    default:
      return "";
  }
}
