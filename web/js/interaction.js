// Mouse and touch on the canvas: pan (drag the background, middle button, or Space+drag), zoom (wheel), select
// (click, Shift/Ctrl+click, Shift/Ctrl+drag a box), move nodes and groups, resize them. Sockets hand over to Linking.

import { renameGroup, renameNode, toggleCollapse } from "./commands.js";
import { nodesInGroup } from "./groups_view.js";

const CLICK_SLOP = 3;
const FORM_CONTROLS = "input, textarea, select, button, .widget";
const MIN_NODE_WIDTH = 180;

/** Follows one pointer until it is released: move(e) on each move, up(e, moved) at the end. */
function track(down, { move, up }) {
  let moved = false;
  const onMove = (e) => {
    if (e.pointerId !== down.pointerId) return;
    if (!moved && Math.hypot(e.clientX - down.clientX, e.clientY - down.clientY) < CLICK_SLOP) return;
    moved = true;
    move?.(e);
  };
  const onUp = (e) => {
    if (e.pointerId !== down.pointerId) return;
    window.removeEventListener("pointermove", onMove);
    window.removeEventListener("pointerup", onUp);
    window.removeEventListener("pointercancel", onUp);
    up?.(e, moved);
  };
  window.addEventListener("pointermove", onMove);
  window.addEventListener("pointerup", onUp);
  window.addEventListener("pointercancel", onUp);
}

export class Interaction {
  constructor(editor, { linking, openSearch, openContextMenu }) {
    this.editor = editor;
    this.linking = linking;
    this.openSearch = openSearch;
    this.openContextMenu = openContextMenu;
    this.spaceDown = false;
    this.pointer = [0, 0];
    this.box = document.getElementById("selection-box");
    const canvas = editor.canvas;
    canvas.addEventListener("pointerdown", (e) => this.onDown(e));
    canvas.addEventListener("wheel", (e) => this.onWheel(e), { passive: false });
    canvas.addEventListener("dblclick", (e) => this.onDoubleClick(e));
    canvas.addEventListener("contextmenu", (e) => this.onContextMenu(e));
    window.addEventListener("pointermove", (e) => (this.pointer = [e.clientX, e.clientY]), { passive: true });
    window.addEventListener("keydown", (e) => {
      if (e.code === "Space" && !e.target.closest?.(FORM_CONTROLS)) this.spaceDown = true;
    });
    window.addEventListener("keyup", (e) => {
      if (e.code === "Space") this.spaceDown = false;
    });
  }

  /** Where new things go: the pointer if it is over the canvas, else the middle of the view. */
  pointerWorld() {
    const rect = this.editor.view.rect;
    const [x, y] = this.pointer;
    const inside = x >= rect.left && x <= rect.right && y >= rect.top && y <= rect.bottom;
    return this.editor.view.toWorld(inside ? x : rect.left + rect.width / 2, inside ? y : rect.top + rect.height / 2);
  }

  onDown(e) {
    const target = e.target;
    const editor = this.editor;
    if (!target.closest(FORM_CONTROLS) && document.activeElement !== document.body) document.activeElement?.blur?.();
    if (e.button === 1 || (e.button === 0 && this.spaceDown)) {
      e.preventDefault();
      return this.pan(e);
    }
    if (e.button !== 0) return;
    const nodeEl = target.closest(".node");
    if (target.classList.contains("dot")) return this.linking.begin(e, target);
    if (target.closest(".node-resize")) return this.resizeNode(e, nodeEl.dataset.id);
    if (target.closest(".group-resize")) return this.resizeGroup(e, target.closest(".group").dataset.group);
    if (nodeEl && target.closest(FORM_CONTROLS)) {
      if (!editor.selection.has(nodeEl.dataset.id)) editor.setSelection([nodeEl.dataset.id]);
      return;
    }
    if (target.closest(".node-collapse")) {
      toggleCollapse(editor, [nodeEl.dataset.id]);
      return;
    }
    if (nodeEl) return this.dragNodes(e, nodeEl.dataset.id);
    if (target.closest(".group-title")) return this.dragGroup(e, target.closest(".group").dataset.group);
    if (target.closest("path.link")) return;
    if (e.shiftKey || e.ctrlKey || e.metaKey) return this.boxSelect(e);
    return this.pan(e, true);
  }

  pan(e, clearOnClick = false) {
    const cover = document.getElementById("pan-cover");
    let [lastX, lastY] = [e.clientX, e.clientY];
    track(e, {
      move: (m) => {
        cover.hidden = false;
        this.editor.view.panBy(m.clientX - lastX, m.clientY - lastY);
        [lastX, lastY] = [m.clientX, m.clientY];
      },
      up: (_, moved) => {
        cover.hidden = true;
        if (!moved && clearOnClick) {
          this.editor.setSelection([]);
          this.editor.selectGroup(null);
        }
      },
    });
  }

  onWheel(e) {
    const area = e.target.closest?.("textarea");
    if (area && area.scrollHeight > area.clientHeight && !e.ctrlKey) return; // scroll the prompt instead
    e.preventDefault();
    const lines = e.deltaMode === 1 ? 16 : e.deltaMode === 2 ? 400 : 1;
    const speed = e.ctrlKey ? 0.01 : 0.0015;
    this.editor.view.zoomAt(e.clientX, e.clientY, Math.exp(-e.deltaY * lines * speed));
  }

  dragNodes(e, id) {
    const editor = this.editor;
    const additive = e.shiftKey || e.ctrlKey || e.metaKey;
    const wasSelected = editor.selection.has(id);
    if (additive) {
      editor.toggleSelected(id);
      if (!editor.selection.has(id)) return;
    } else if (!wasSelected) {
      editor.setSelection([id]);
    }
    const ids = [...editor.selection];
    const links = editor.graph.linksTouching(ids);
    let [lastX, lastY] = editor.view.toWorld(e.clientX, e.clientY);
    let raised = false;
    track(e, {
      move: (m) => {
        // Raised only once it moves: re-attaching the element under a press would eat the click.
        if (!raised) editor.bringToFront(ids);
        raised = true;
        const [x, y] = editor.view.toWorld(m.clientX, m.clientY);
        editor.moveNodes(ids, x - lastX, y - lastY, links);
        [lastX, lastY] = [x, y];
      },
      up: (_, moved) => {
        if (moved) {
          for (const nid of ids) {
            const node = editor.graph.get(nid);
            node.pos = node.pos.map(Math.round);
            editor.views.get(nid)?.setPosition();
          }
          editor.drawLinks(links);
          editor.commit();
        } else if (!additive && wasSelected && editor.selection.size > 1) {
          editor.setSelection([id]);
        }
      },
    });
  }

  boxSelect(e) {
    const editor = this.editor;
    const rect = editor.view.rect;
    const start = [e.clientX, e.clientY];
    const before = new Set(editor.selection);
    const show = (m) => {
      const [x0, x1] = [Math.min(start[0], m.clientX), Math.max(start[0], m.clientX)];
      const [y0, y1] = [Math.min(start[1], m.clientY), Math.max(start[1], m.clientY)];
      Object.assign(this.box.style, {
        left: `${x0 - rect.left}px`, top: `${y0 - rect.top}px`, width: `${x1 - x0}px`, height: `${y1 - y0}px`,
      });
      this.box.hidden = false;
      return [editor.view.toWorld(x0, y0), editor.view.toWorld(x1, y1)];
    };
    track(e, {
      move: (m) => {
        const [[wx0, wy0], [wx1, wy1]] = show(m);
        const inside = [...editor.views.values()].filter((v) => {
          const [x, y] = v.node.pos;
          return x < wx1 && x + v.width > wx0 && y < wy1 && y + v.height > wy0;
        }).map((v) => v.node.id);
        editor.setSelection(new Set([...before, ...inside]));
      },
      up: () => {
        this.box.hidden = true;
      },
    });
  }

  dragGroup(e, groupId) {
    const editor = this.editor;
    const group = editor.graph.groups.find((g) => g.id === groupId);
    if (!group) return;
    editor.setSelection([]);
    editor.selectGroup(groupId);
    const ids = nodesInGroup(group, editor.graph.nodes.values());
    const links = editor.graph.linksTouching(ids);
    let [lastX, lastY] = editor.view.toWorld(e.clientX, e.clientY);
    track(e, {
      move: (m) => {
        const [x, y] = editor.view.toWorld(m.clientX, m.clientY);
        group.bounds[0] += x - lastX;
        group.bounds[1] += y - lastY;
        editor.moveNodes(ids, x - lastX, y - lastY, links);
        editor.groupsView.update(group, undefined, groupId);
        [lastX, lastY] = [x, y];
      },
      up: (_, moved) => {
        if (!moved) return;
        group.bounds = group.bounds.map(Math.round);
        for (const id of ids) editor.graph.get(id).pos = editor.graph.get(id).pos.map(Math.round);
        editor.moveNodes(ids, 0, 0, links);
        editor.renderGroups();
        editor.commit();
      },
    });
  }

  resizeGroup(e, groupId) {
    const editor = this.editor;
    const group = editor.graph.groups.find((g) => g.id === groupId);
    const [, , w0, h0] = group.bounds;
    const [sx, sy] = editor.view.toWorld(e.clientX, e.clientY);
    track(e, {
      move: (m) => {
        const [x, y] = editor.view.toWorld(m.clientX, m.clientY);
        group.bounds[2] = Math.max(120, Math.round(w0 + x - sx));
        group.bounds[3] = Math.max(80, Math.round(h0 + y - sy));
        editor.groupsView.update(group, undefined, editor.selectedGroup);
      },
      up: (_, moved) => moved && editor.commit(),
    });
  }

  resizeNode(e, id) {
    const editor = this.editor;
    const view = editor.views.get(id);
    const [w0, h0] = [view.width, view.height];
    const [sx, sy] = editor.view.toWorld(e.clientX, e.clientY);
    track(e, {
      move: (m) => {
        const [x, y] = editor.view.toWorld(m.clientX, m.clientY);
        view.node.size = [Math.max(MIN_NODE_WIDTH, Math.round(w0 + x - sx)), Math.max(0, Math.round(h0 + y - sy))];
        view.refresh();
      },
      up: (_, moved) => moved && editor.commit(),
    });
  }

  onDoubleClick(e) {
    const target = e.target;
    if (target.closest(".node-title")) return renameNode(this.editor, target.closest(".node").dataset.id);
    if (target.closest(".group-title")) return renameGroup(this.editor, target.closest(".group").dataset.group);
    if (target.closest(".node") || target.closest(FORM_CONTROLS)) return;
    this.openSearch({ clientX: e.clientX, clientY: e.clientY });
  }

  onContextMenu(e) {
    if (e.target.closest("input, textarea")) return; // the browser's own menu for text
    e.preventDefault();
    this.openContextMenu(e);
  }
}
