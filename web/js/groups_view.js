// Groups: coloured, titled rectangles behind the nodes. Dragging a title moves the group with the nodes in it.

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export class GroupsView {
  constructor(layer) {
    this.layer = layer;
    this.els = new Map();
  }

  render(groups, selectedId) {
    const seen = new Set();
    for (const group of groups) {
      seen.add(group.id);
      let root = this.els.get(group.id);
      if (!root) {
        root = el("div", "group");
        root.dataset.group = group.id;
        root.append(el("div", "group-title"), el("div", "group-resize"));
        this.layer.append(root);
        this.els.set(group.id, root);
      }
      this.update(group, root, selectedId);
    }
    for (const [id, root] of this.els) {
      if (!seen.has(id)) {
        root.remove();
        this.els.delete(id);
      }
    }
  }

  update(group, root = this.els.get(group.id), selectedId = null) {
    if (!root) return;
    const [x, y, w, h] = group.bounds;
    root.style.left = `${x}px`;
    root.style.top = `${y}px`;
    root.style.width = `${w}px`;
    root.style.height = `${h}px`;
    root.firstChild.textContent = group.title;
    root.className = `group${group.color ? ` color-${group.color}` : ""}${group.id === selectedId ? " selected" : ""}`;
  }
}

/** The nodes a group carries: those whose top-left corner lies inside it. */
export function nodesInGroup(group, nodes) {
  const [x, y, w, h] = group.bounds;
  return [...nodes].filter((n) => n.pos[0] >= x && n.pos[1] >= y && n.pos[0] < x + w && n.pos[1] < y + h)
    .map((n) => n.id);
}
