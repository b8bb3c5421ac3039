// Edits a user asks for by name (menus, shortcuts): each changes the graph and commits one undo step.

import { nodesInGroup } from "./groups_view.js";

const GROUP_PADDING = 24;
const GROUP_TITLE = 34;

function targets(editor, ids) {
  return ids ?? [...editor.selection];
}

export function deleteSelection(editor) {
  if (editor.selection.size) {
    editor.removeNodes([...editor.selection]);
    editor.setSelection([]);
    editor.commit();
  } else if (editor.selectedGroup) {
    removeGroup(editor, editor.selectedGroup);
  }
}

export function selectAll(editor) {
  editor.setSelection([...editor.graph.nodes.keys()]);
}

export function toggleCollapse(editor, ids) {
  const list = targets(editor, ids);
  if (!list.length) return;
  const collapse = !list.every((id) => editor.graph.get(id)?.collapsed);
  for (const id of list) {
    const view = editor.views.get(id);
    if (!view) continue;
    view.node.collapsed = collapse;
    view.refresh();
  }
  editor.commit();
}

/** Mutes or bypasses the nodes; doing it again sets them back to normal. */
export function toggleMode(editor, mode, ids) {
  const list = targets(editor, ids);
  if (!list.length) return;
  const next = list.every((id) => editor.graph.get(id)?.mode === mode) ? "normal" : mode;
  for (const id of list) {
    const view = editor.views.get(id);
    if (!view) continue;
    view.node.mode = next;
    view.refresh();
  }
  editor.commit();
}

export function setNodeColor(editor, color, ids) {
  for (const id of targets(editor, ids)) {
    const view = editor.views.get(id);
    if (!view) continue;
    view.node.color = color;
    view.refresh();
  }
  editor.commit();
}

/** Replaces an element's text with an input; Enter or leaving keeps the edit, Escape drops it. */
export function inlineEdit(target, initial, onDone, className = "node-title-edit") {
  const input = document.createElement("input");
  input.className = className;
  input.value = initial;
  input.spellcheck = false;
  const previous = target.style.display;
  target.style.display = "none";
  target.after(input);
  input.focus();
  input.select();
  let done = false;
  const finish = (keep) => {
    if (done) return;
    done = true;
    input.remove();
    target.style.display = previous;
    if (keep) onDone(input.value.trim());
  };
  input.addEventListener("keydown", (event) => {
    event.stopPropagation();
    if (event.key === "Enter") finish(true);
    if (event.key === "Escape") finish(false);
  });
  input.addEventListener("blur", () => finish(true));
  input.addEventListener("pointerdown", (event) => event.stopPropagation());
  return input;
}

export function renameNode(editor, id) {
  const view = editor.views.get(id);
  if (!view) return;
  inlineEdit(view.titleEl, editor.graph.titleOf(view.node, editor.schema), (title) => {
    const def = editor.schema.get(view.node.type);
    view.node.title = title && title !== def?.displayName ? title : null;
    view.refresh();
    editor.commit();
  });
}

// ------------------------------------------------------------------------------------------------ groups

export function groupSelection(editor) {
  const ids = [...editor.selection];
  const box = ids.length ? editor.bounds(ids) : null;
  const [x, y, w, h] = box ?? [...editor.view.toWorld(innerWidth / 2, innerHeight / 2), 400, 260];
  const group = {
    id: editor.graph.newGroupId(),
    title: "Group",
    bounds: box
      ? [x - GROUP_PADDING, y - GROUP_PADDING - GROUP_TITLE, w + 2 * GROUP_PADDING, h + 2 * GROUP_PADDING + GROUP_TITLE]
      : [x, y, w, h],
    color: null,
  };
  editor.graph.groups.push(group);
  editor.selectGroup(group.id);
  editor.commit();
  return group;
}

export function removeGroup(editor, id) {
  editor.graph.groups = editor.graph.groups.filter((g) => g.id !== id);
  if (editor.selectedGroup === id) editor.selectedGroup = null;
  editor.renderGroups();
  editor.commit();
}

export function setGroupColor(editor, id, color) {
  const group = editor.graph.groups.find((g) => g.id === id);
  if (!group) return;
  group.color = color;
  editor.renderGroups();
  editor.commit();
}

export function renameGroup(editor, id) {
  const group = editor.graph.groups.find((g) => g.id === id);
  const title = editor.groupsView.els.get(id)?.firstChild;
  if (!group || !title) return;
  inlineEdit(title, group.title, (text) => {
    group.title = text || "Group";
    editor.renderGroups();
    editor.commit();
  });
}

export function fitGroupToNodes(editor, id) {
  const group = editor.graph.groups.find((g) => g.id === id);
  const ids = group ? nodesInGroup(group, editor.graph.nodes.values()) : [];
  const box = ids.length ? editor.bounds(ids) : null;
  if (!box) return;
  const [x, y, w, h] = box;
  group.bounds = [x - GROUP_PADDING, y - GROUP_PADDING - GROUP_TITLE, w + 2 * GROUP_PADDING,
    h + 2 * GROUP_PADDING + GROUP_TITLE];
  editor.renderGroups();
  editor.commit();
}

// ------------------------------------------------------------------------------------------------ seeds

const RANDOM_LIMIT = Number.MAX_SAFE_INTEGER;

const CONTROL_STEPS = {
  fixed: (value) => value,
  increment: (value, input) => Math.min(value + 1, input.opts.max ?? RANDOM_LIMIT),
  decrement: (value, input) => Math.max(value - 1, input.opts.min ?? 0),
  randomize: (value, input) => {
    const min = input.opts.min ?? 0;
    const max = Math.min(input.opts.max ?? RANDOM_LIMIT, RANDOM_LIMIT);
    const span = max - min + 1;
    const random = Math.floor(Math.random() * 2 ** 21) * 2 ** 32 + Math.floor(Math.random() * 2 ** 32);
    return min + (random % span);
  },
};

/** After a run is queued: seeds move on as their "control after generate" says. */
export function applyControlAfterGenerate(editor) {
  let changed = false;
  for (const view of editor.views.values()) {
    for (const [name, mode] of Object.entries(view.node.controls)) {
      const input = view.def.inputs.find((i) => i.name === name);
      const step = CONTROL_STEPS[mode];
      if (!input || !step || mode === "fixed" || view.node.links[name]) continue;
      view.node.values[name] = step(Number(view.node.values[name]) || 0, input);
      view.widgets.get(name)?.set(view.node.values[name]);
      changed = true;
    }
  }
  if (changed) editor.commit();
}
