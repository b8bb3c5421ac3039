// The import report: what a loaded file mapped, which node types or model files are missing here, and warnings.
// Shown after an import when there is something to say (always after a server conversion).

import { closePopup, openPopup } from "./popup.js";

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** What the browser itself can tell about a loaded graph: unknown node types, combo values not on offer. */
export function checkGraph(graph, schema) {
  const unknown = {};
  const missingModels = [];
  for (const node of graph.nodes.values()) {
    const def = schema.get(node.type);
    if (!def) {
      (unknown[node.type] ??= []).push(node.id);
      continue;
    }
    for (const input of def.inputs) {
      const value = node.values[input.name];
      if (input.choices && !node.links[input.name] && value !== undefined && !input.choices.includes(String(value))) {
        missingModels.push({ node_id: node.id, class_type: node.type, input_name: input.name, name: String(value),
          folder: "", suggestions: [] });
      }
    }
  }
  return { unknown, missing_models: missingModels };
}

function list(items) {
  const ul = el("ul");
  for (const item of items) ul.append(el("li", "", item));
  return ul;
}

/** report: the server's import report (or the browser's own); extra warnings are appended. */
export function showImportReport(title, report, { warnings = [], note = "" } = {}) {
  const box = el("div", "dialog import-report");
  box.append(el("h2", "", title));
  if (note) box.append(el("p", "", note));
  const rows = el("table");
  const row = (label, value) => {
    const tr = el("tr");
    tr.append(el("td", "", label), el("td", "", value));
    rows.append(tr);
  };
  if (report.source) row("source", report.source);
  if (report.nodes) row("nodes", String(Object.keys(report.nodes).length));
  if (rows.children.length) box.append(rows);
  const renamed = Object.entries(report.mapped ?? {}).filter(([theirs, ours]) => theirs !== ours);
  if (renamed.length) {
    box.append(el("h4", "", "Mapped node types"), list(renamed.map(([theirs, ours]) => `${theirs} → ${ours}`)));
  }
  const unknown = Object.entries(report.unknown ?? {});
  if (unknown.length) {
    box.append(el("h4", "bad", "Unknown node types"),
      list(unknown.map(([type, ids]) => `${type} (node ${ids.join(", ")})`)));
  }
  const missing = report.missing_models ?? [];
  if (missing.length) {
    box.append(el("h4", "bad", "Missing model files"), list(missing.map((m) => {
      const hint = m.suggestions?.length ? ` — did you mean ${m.suggestions.join(", ")}?` : "";
      return `${m.folder ? `${m.folder}/` : ""}${m.name} (node ${m.node_id} ${m.class_type}.${m.input_name})${hint}`;
    })));
  }
  const remapped = report.remapped_models ?? [];
  if (remapped.length) {
    box.append(el("h4", "", "Model files matched"), list(remapped.map((r) => `${r.old} → ${r.new} (node ${r.node_id})`)));
  }
  const dropped = (report.dropped ?? []).filter((d) => d.reason === "muted" || d.reason === "bypassed");
  if (dropped.length) {
    box.append(el("h4", "", "Left out"), list(dropped.map((d) => `node ${d.node_id} (${d.type}): ${d.reason}`)));
  }
  const allWarnings = [...(report.warnings ?? []), ...warnings];
  if (allWarnings.length) box.append(el("h4", "", "Warnings"), list(allWarnings));
  if (!unknown.length && !missing.length && !allWarnings.length) {
    box.append(el("p", "ok", "Every node and model file was found."));
  }
  const actions = el("div", "actions");
  const ok = el("button", "primary", "OK");
  ok.addEventListener("click", closePopup);
  actions.append(ok);
  box.append(actions);
  openPopup(box);
  ok.focus();
  return box;
}

export function needsReport(report, warnings = []) {
  return Object.keys(report.unknown ?? {}).length > 0 || (report.missing_models ?? []).length > 0 || warnings.length > 0;
}
