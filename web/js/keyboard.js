// Keyboard shortcuts, as one table. "Anywhere" shortcuts work while typing in a prompt too (Ctrl+Enter queues);
// the rest leave text fields alone (Ctrl+Z there is the field's own undo).

import {
  deleteSelection,
  groupSelection,
  renameNode,
  selectAll,
  toggleCollapse,
  toggleMode,
} from "./commands.js";
import { isPopupOpen } from "./popup.js";

export const SHORTCUTS = [
  { keys: ["Ctrl+Enter"], anywhere: true, help: "Queue the workflow", run: (app) => app.queue() },
  { keys: ["Ctrl+S"], anywhere: true, help: "Save (download) the workflow", run: (app) => app.files.save() },
  { keys: ["Ctrl+O"], anywhere: true, help: "Open a workflow, PNG or ComfyUI file", run: (app) => app.files.open() },
  { keys: ["Ctrl+Z"], help: "Undo", run: (app) => app.editor.undo() },
  { keys: ["Ctrl+Shift+Z", "Ctrl+Y"], help: "Redo", run: (app) => app.editor.redo() },
  { keys: ["Ctrl+C"], keepDefault: true, help: "Copy selected nodes", run: (app) => app.clipboard.copy() },
  { keys: ["Ctrl+V"], keepDefault: true, help: "Paste (also images into Load Image)",
    run: (app) => app.clipboard.pasteSoon(false) },
  { keys: ["Ctrl+Shift+V"], keepDefault: true, help: "Paste keeping input links",
    run: (app) => app.clipboard.pasteSoon(true) },
  { keys: ["Ctrl+D"], help: "Duplicate", run: (app) => app.clipboard.duplicate() },
  { keys: ["Ctrl+A"], help: "Select all", run: (app) => selectAll(app.editor) },
  { keys: ["Delete", "Backspace"], help: "Delete selected", run: (app) => deleteSelection(app.editor) },
  { keys: ["Ctrl+G"], help: "Group selected nodes", run: (app) => groupSelection(app.editor) },
  { keys: ["Alt+C"], help: "Collapse / expand", run: (app) => toggleCollapse(app.editor) },
  { keys: ["Ctrl+M"], help: "Mute / unmute", run: (app) => toggleMode(app.editor, "muted") },
  { keys: ["Ctrl+B"], help: "Bypass / stop bypassing", run: (app) => toggleMode(app.editor, "bypass") },
  { keys: ["F2"], help: "Rename the selected node", run: (app) => {
    const [id] = app.editor.selection;
    if (id) renameNode(app.editor, id);
  } },
  { keys: ["Tab", "Shift+A"], help: "Add a node (search)", run: (app) => app.openSearch({}) },
  { keys: ["F"], help: "Fit the whole workflow", run: (app) => app.editor.fitView() },
  { keys: ["."], help: "Fit the selection", run: (app) => app.editor.fitView([...app.editor.selection]) },
  { keys: ["R"], help: "Refresh node list and model files", run: (app) => app.refreshSchema() },
  { keys: ["?"], help: "This help", run: (app) => app.showHelp() },
  { keys: ["Escape"], help: "Clear the selection", run: (app) => app.editor.setSelection([]) },
];

export const MOUSE_HELP = [
  ["Drag the background / middle button / Space+drag", "Pan"],
  ["Wheel", "Zoom at the pointer"],
  ["Double-click the background", "Search nodes"],
  ["Right-click", "Add nodes by category, node and group menus"],
  ["Shift/Ctrl+click, Shift/Ctrl+drag", "Add to the selection, box-select"],
  ["Drag from an output into empty space", "Add a node that takes it"],
  ["Drag from a linked input", "Move or remove that link"],
  ["Drag a number sideways", "Scrub it (Shift: finer)"],
  ["Double-click a title", "Rename"],
  ["Drop files on the canvas", "Open workflows and PNGs; images onto Load Image"],
];

const SYMBOL_KEY = /^[^a-zA-Z0-9]$/;

/** "Ctrl+Shift+Z" for the event; Shift is implied by symbols such as "?". */
export function keyName(e) {
  const key = e.key.length === 1 ? e.key.toUpperCase() : e.key;
  const parts = [];
  if (e.ctrlKey || e.metaKey) parts.push("Ctrl");
  if (e.altKey) parts.push("Alt");
  if (e.shiftKey && !SYMBOL_KEY.test(key)) parts.push("Shift");
  parts.push(e.altKey && e.code.startsWith("Key") ? e.code.slice(3) : key);
  return parts.join("+");
}

function typing(target) {
  return Boolean(target.closest?.("input, textarea, select, [contenteditable]"));
}

export function installShortcuts(app) {
  const table = new Map();
  for (const shortcut of SHORTCUTS) for (const key of shortcut.keys) table.set(key, shortcut);
  window.addEventListener("keydown", (e) => {
    const shortcut = table.get(keyName(e));
    if (!shortcut || e.repeat && !shortcut.anywhere) return;
    if (!shortcut.anywhere && (typing(e.target) || isPopupOpen())) return;
    if (!shortcut.keepDefault) e.preventDefault();
    shortcut.run(app);
  });
}
