// Copy, paste and duplicate nodes. Copies go to localStorage (shared by every tab of this server, so pasting
// works across tabs) and, through the copy event, to the system clipboard as JSON.

import { normalizeNode } from "./graph.js";

const STORAGE_KEY = "diffgraph.clipboard.v1";
export const CLIPBOARD_KIND = "diffgraph-nodes";
const DUPLICATE_OFFSET = 32;

export class Clipboard {
  constructor(app) {
    this.app = app;
    this.pendingPaste = 0;
    document.addEventListener("copy", (e) => this.onCopyEvent(e));
    document.addEventListener("paste", (e) => this.onPasteEvent(e));
  }

  get editor() {
    return this.app.editor;
  }

  /** The selected nodes with the links between them (and, for Ctrl+Shift+V, the links into them). */
  selectionData() {
    const ids = [...this.editor.selection];
    if (!ids.length) return null;
    const nodes = ids.map((id) => structuredClone(this.editor.graph.get(id)));
    return { kind: CLIPBOARD_KIND, version: 1, nodes };
  }

  copy() {
    const data = this.selectionData();
    if (!data) return false;
    try {
      localStorage.setItem(STORAGE_KEY, JSON.stringify(data));
    } catch {
      return false;
    }
    return true;
  }

  stored() {
    try {
      const data = JSON.parse(localStorage.getItem(STORAGE_KEY) ?? "null");
      return data?.kind === CLIPBOARD_KIND ? data : null;
    } catch {
      return null;
    }
  }

  /** Puts copied nodes at `at` (world point; the pointer by default) with fresh ids; selects them. */
  insert(data, at, keepInputs = false) {
    const editor = this.editor;
    const source = data.nodes.map(normalizeNode);
    if (!source.length) return [];
    const minX = Math.min(...source.map((n) => n.pos[0]));
    const minY = Math.min(...source.map((n) => n.pos[1]));
    const ids = new Map(source.map((n) => [n.id, editor.graph.newId()]));
    const nodes = source.map((node) => {
      const copy = { ...node, id: ids.get(node.id), pos: [Math.round(at[0] + node.pos[0] - minX),
        Math.round(at[1] + node.pos[1] - minY)] };
      copy.links = {};
      for (const [input, [from, slot]] of Object.entries(node.links)) {
        if (ids.has(from)) copy.links[input] = [ids.get(from), slot];
        else if (keepInputs && editor.graph.get(from)) copy.links[input] = [from, slot];
      }
      return copy;
    });
    editor.addNodes(nodes);
    editor.setSelection(nodes.map((n) => n.id));
    editor.commit();
    return nodes;
  }

  paste(at = this.app.interaction.pointerWorld(), keepInputs = false) {
    const data = this.stored();
    return data ? this.insert(data, at, keepInputs) : [];
  }

  duplicate() {
    const data = this.selectionData();
    if (!data) return [];
    const minX = Math.min(...data.nodes.map((n) => n.pos[0]));
    const minY = Math.min(...data.nodes.map((n) => n.pos[1]));
    return this.insert(data, [minX + DUPLICATE_OFFSET, minY + DUPLICATE_OFFSET], true);
  }

  /** Ctrl+V: the paste event (system clipboard: images, nodes, workflows) wins; else the stored copy. */
  pasteSoon(keepInputs) {
    clearTimeout(this.pendingPaste);
    this.pendingPaste = setTimeout(() => this.paste(undefined, keepInputs), 0);
  }

  onCopyEvent(e) {
    if (e.target.closest?.("input, textarea, [contenteditable]")) return;
    const data = this.selectionData();
    if (!data) return;
    e.clipboardData.setData("text/plain", JSON.stringify(data));
    e.preventDefault();
  }

  onPasteEvent(e) {
    if (e.target.closest?.("input, textarea, [contenteditable]")) return;
    const files = [...(e.clipboardData?.files ?? [])].filter((f) => f.type.startsWith("image/"));
    if (files.length) {
      clearTimeout(this.pendingPaste);
      e.preventDefault();
      this.app.files.pasteImage(files[0]);
      return;
    }
    const text = e.clipboardData?.getData("text/plain") ?? "";
    let data = null;
    try {
      data = JSON.parse(text);
    } catch {
      return; // plain text: the stored copy is pasted instead
    }
    if (data?.kind === CLIPBOARD_KIND) {
      clearTimeout(this.pendingPaste);
      e.preventDefault();
      this.insert(data, this.app.interaction.pointerWorld());
    } else if (data && typeof data === "object" && this.app.files.recognise(data)) {
      clearTimeout(this.pendingPaste);
      e.preventDefault();
      this.app.files.importData(data, "pasted workflow");
    }
  }
}
