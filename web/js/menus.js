// What right-clicking offers: on the canvas (add nodes by category, groups, paste, view), on a node, on a group,
// on a link.

import {
  deleteSelection,
  fitGroupToNodes,
  groupSelection,
  removeGroup,
  renameGroup,
  renameNode,
  setGroupColor,
  setNodeColor,
  toggleCollapse,
  toggleMode,
} from "./commands.js";
import { COLORS } from "./graph.js";
import { openMenu } from "./menu.js";

const SWATCHES = {
  red: "#b54a4a", brown: "#8a6546", green: "#3f8a55", blue: "#456fb3", cyan: "#2f8792", purple: "#7552ab",
  yellow: "#a38b2e", black: "#111214",
};

function colorItems(apply) {
  return [
    { label: "No colour", swatch: null, action: () => apply(null) },
    ...COLORS.map((color) => ({ label: color[0].toUpperCase() + color.slice(1), swatch: SWATCHES[color],
      action: () => apply(color) })),
  ];
}

function categoryItems(branch, addAt) {
  const items = [...branch.children.values()]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((child) => ({ label: child.name, submenu: () => categoryItems(child, addAt) }));
  const defs = [...branch.defs].sort((a, b) => a.displayName.localeCompare(b.displayName));
  if (items.length && defs.length) items.push("-");
  for (const def of defs) items.push({ label: def.displayName, action: () => addAt(def) });
  return items;
}

function canvasItems(app, e) {
  const { editor } = app;
  const world = editor.view.toWorld(e.clientX, e.clientY);
  const addAt = (def) => {
    const node = editor.addNode(def.name, world);
    editor.setSelection([node.id]);
    editor.commit();
  };
  return [
    { label: "Add node", submenu: () => categoryItems(app.schema.categoryTree(), addAt) },
    { label: "Search nodes…", shortcut: "Tab", action: () => app.openSearch({ clientX: e.clientX, clientY: e.clientY }) },
    "-",
    { label: "Add group", shortcut: "Ctrl+G", action: () => groupSelection(editor) },
    { label: "Paste", shortcut: "Ctrl+V", action: () => app.clipboard.paste(world) },
    { label: "Select all", shortcut: "Ctrl+A", action: () => editor.setSelection([...editor.graph.nodes.keys()]) },
    "-",
    { label: "Fit view", shortcut: "F", action: () => editor.fitView() },
    { label: "Arrange nodes", action: () => app.arrange() },
    { label: "Refresh node list", shortcut: "R", action: () => app.refreshSchema() },
  ];
}

function nodeItems(app, id) {
  const { editor } = app;
  if (!editor.selection.has(id)) editor.setSelection([id]);
  const node = editor.graph.get(id);
  const many = editor.selection.size > 1;
  return [
    { title: many ? `${editor.selection.size} nodes` : editor.graph.titleOf(node, app.schema) },
    { label: "Rename", shortcut: "F2", disabled: many, action: () => renameNode(editor, id) },
    { label: "Colour", submenu: colorItems((color) => setNodeColor(editor, color)) },
    { label: node.collapsed ? "Expand" : "Collapse", shortcut: "Alt+C", action: () => toggleCollapse(editor) },
    { label: node.mode === "muted" ? "Unmute" : "Mute", shortcut: "Ctrl+M", action: () => toggleMode(editor, "muted") },
    { label: node.mode === "bypass" ? "Stop bypassing" : "Bypass", shortcut: "Ctrl+B",
      action: () => toggleMode(editor, "bypass") },
    "-",
    { label: "Copy", shortcut: "Ctrl+C", action: () => app.clipboard.copy() },
    { label: "Duplicate", shortcut: "Ctrl+D", action: () => app.clipboard.duplicate() },
    { label: "Group selected", shortcut: "Ctrl+G", action: () => groupSelection(editor) },
    "-",
    { label: "Delete", shortcut: "Del", action: () => deleteSelection(editor) },
  ];
}

function groupItems(app, id) {
  const { editor } = app;
  editor.setSelection([]);
  editor.selectGroup(id);
  return [
    { title: editor.graph.groups.find((g) => g.id === id)?.title ?? "Group" },
    { label: "Rename", action: () => renameGroup(editor, id) },
    { label: "Colour", submenu: colorItems((color) => setGroupColor(editor, id, color)) },
    { label: "Fit to its nodes", action: () => fitGroupToNodes(editor, id) },
    "-",
    { label: "Remove group", action: () => removeGroup(editor, id) },
  ];
}

function linkItems(app, path) {
  const { editor } = app;
  return [
    { label: "Delete link", action: () => {
      editor.disconnect(path.dataset.to, path.dataset.input);
      editor.commit();
    } },
  ];
}

export function openContextMenu(app, e) {
  const target = e.target;
  const nodeEl = target.closest(".node");
  const groupEl = target.closest(".group");
  const linkEl = target.closest("path.link");
  const items = nodeEl ? nodeItems(app, nodeEl.dataset.id)
    : linkEl ? linkItems(app, linkEl)
      : groupEl && target.closest(".group-title") ? groupItems(app, groupEl.dataset.group)
        : canvasItems(app, e);
  openMenu(items, e.clientX, e.clientY);
}
