// Dragging links: from an output to an input (or a node), backwards from an empty input to an output, or
// picking up an input's existing link to move it elsewhere. Dropped on empty canvas, a new link opens the node
// search limited to the nodes that fit, and connects the one chosen.

import { hint } from "./toast.js";
import { typesCompatible } from "./types.js";

const NEW_NODE_OFFSET_Y = 46;

/** What the pointer is over: an input, an output, a node, or nothing. */
function targetAt(clientX, clientY) {
  const el = document.elementFromPoint(clientX, clientY);
  const nodeEl = el?.closest?.(".node");
  if (!nodeEl) return null;
  const nodeId = nodeEl.dataset.id;
  const inputEl = el.closest("[data-input]");
  if (inputEl) return { kind: "input", nodeId, input: inputEl.dataset.input, el: inputEl.querySelector(".dot") };
  const outputEl = el.closest("[data-slot]");
  if (outputEl) return { kind: "output", nodeId, slot: Number(outputEl.dataset.slot), el: outputEl.querySelector(".dot") };
  return { kind: "node", nodeId, el: nodeEl };
}

export class Linking {
  constructor(editor, { openSearch }) {
    this.editor = editor;
    this.openSearch = openSearch;
    this.marked = null;
  }

  begin(e, dotEl) {
    e.preventDefault();
    e.stopPropagation();
    const editor = this.editor;
    const nodeId = dotEl.closest(".node").dataset.id;
    const view = editor.views.get(nodeId);
    const outputRow = dotEl.closest("[data-slot]");
    let drag;
    if (outputRow) {
      const slot = Number(outputRow.dataset.slot);
      drag = { from: { nodeId, slot, type: view.outputType(slot) } };
    } else {
      const input = dotEl.closest("[data-input]").dataset.input;
      const existing = view.node.links[input];
      if (existing) {
        const [fromId, slot] = existing;
        editor.disconnect(nodeId, input);
        drag = { from: { nodeId: fromId, slot, type: editor.views.get(fromId).outputType(slot) }, detached: true };
      } else {
        drag = { to: { nodeId, input, type: view.inputType(input) } };
      }
    }
    const move = (m) => this.move(drag, m);
    const up = (u) => {
      if (u.pointerId !== e.pointerId) return;
      window.removeEventListener("pointermove", move);
      window.removeEventListener("pointerup", up);
      this.unmark();
      editor.links.hideTemp();
      this.drop(drag, u);
    };
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", up);
    this.move(drag, e);
  }

  /** The input or output a drop onto `target` would use, or a reason it cannot. */
  resolve(drag, target) {
    const editor = this.editor;
    if (!target) return null;
    const view = editor.views.get(target.nodeId);
    if (drag.from) {
      const { nodeId, slot, type } = drag.from;
      if (target.kind === "input") {
        const problem = editor.linkProblem(nodeId, slot, target.nodeId, target.input);
        return problem ? { problem } : { toId: target.nodeId, input: target.input };
      }
      if (target.kind === "output") return { problem: "drop it on an input" };
      const fitting = view.def.inputs.filter((i) => typesCompatible(type, i.type));
      const input = fitting.find((i) => !view.node.links[i.name]) ?? fitting[0];
      if (!input) return { problem: `${editor.graph.titleOf(view.node, editor.schema)} has no input for ${type}` };
      const problem = editor.linkProblem(nodeId, slot, target.nodeId, input.name);
      return problem ? { problem } : { toId: target.nodeId, input: input.name };
    }
    const { nodeId, input, type } = drag.to;
    if (target.kind === "input") return { problem: "drop it on an output" };
    const slot = target.kind === "output" ? target.slot
      : view.def.outputs.findIndex((o) => typesCompatible(o.type, type));
    if (slot < 0) return { problem: `${editor.graph.titleOf(view.node, editor.schema)} has no ${type} output` };
    const problem = editor.linkProblem(target.nodeId, slot, nodeId, input);
    return problem ? { problem } : { fromId: target.nodeId, slot };
  }

  move(drag, m) {
    const editor = this.editor;
    const point = editor.view.toWorld(m.clientX, m.clientY);
    const target = targetAt(m.clientX, m.clientY);
    const result = this.resolve(drag, target);
    this.unmark();
    if (target && result && target.kind !== "node") {
      this.marked = target.el;
      target.el?.classList.add(result.problem ? "drop-bad" : "drop-ok");
    }
    const bad = Boolean(result?.problem);
    if (drag.from) {
      const anchor = editor.views.get(drag.from.nodeId).outputAnchor(drag.from.slot);
      editor.links.showTemp(anchor, point, drag.from.type, bad);
    } else {
      const anchor = editor.views.get(drag.to.nodeId).inputAnchor(drag.to.input);
      editor.links.showTemp(point, anchor, drag.to.type, bad);
    }
  }

  unmark() {
    this.marked?.classList.remove("drop-ok", "drop-bad");
    this.marked = null;
  }

  drop(drag, u) {
    const editor = this.editor;
    const target = targetAt(u.clientX, u.clientY);
    const result = this.resolve(drag, target);
    if (result?.problem) {
      hint(`Can't connect: ${result.problem}`, u.clientX, u.clientY);
      if (drag.detached) editor.commit();
      return;
    }
    if (result) {
      const done = drag.from
        ? editor.connect(drag.from.nodeId, drag.from.slot, result.toId, result.input)
        : editor.connect(result.fromId, result.slot, drag.to.nodeId, drag.to.input);
      if (!done.ok) hint(`Can't connect: ${done.reason}`, u.clientX, u.clientY);
      editor.commit();
      return;
    }
    if (drag.detached) {
      editor.commit(); // the link was picked up and let go: it is removed
      return;
    }
    if (target) return;
    this.offerNodes(drag, u);
  }

  offerNodes(drag, u) {
    const editor = this.editor;
    const [x, y] = editor.view.toWorld(u.clientX, u.clientY);
    const filter = drag.from ? { accepts: drag.from.type } : { produces: drag.to.type };
    this.openSearch({
      clientX: u.clientX,
      clientY: u.clientY,
      filter,
      onPick: (def) => {
        const node = editor.addNode(def.name, [x + 20, y - NEW_NODE_OFFSET_Y]);
        if (!drag.from) {
          node.pos[0] = Math.round(x - node.size[0] - 20); // to the left of the input it feeds
          editor.views.get(node.id).setPosition();
        }
        if (drag.from) {
          const input = def.inputs.find((i) => typesCompatible(drag.from.type, i.type));
          editor.connect(drag.from.nodeId, drag.from.slot, node.id, input.name);
        } else {
          const slot = def.outputs.findIndex((o) => typesCompatible(o.type, drag.to.type));
          editor.connect(node.id, slot, drag.to.nodeId, drag.to.input);
        }
        editor.setSelection([node.id]);
        editor.commit();
      },
    });
  }
}
