// Links drawn as SVG cubic curves in world coordinates, one <path> per link, keyed by the input they feed.

import { typeColor } from "./types.js";

const SVG = "http://www.w3.org/2000/svg";

export function linkKey(toId, input) {
  return `${toId}\u0000${input}`;
}

export function curve([x1, y1], [x2, y2]) {
  const bend = Math.max(40, Math.min(220, Math.abs(x2 - x1) * 0.5 + Math.abs(y2 - y1) * 0.15));
  return `M${x1.toFixed(1)},${y1.toFixed(1)} C${(x1 + bend).toFixed(1)},${y1.toFixed(1)} ` +
    `${(x2 - bend).toFixed(1)},${y2.toFixed(1)} ${x2.toFixed(1)},${y2.toFixed(1)}`;
}

export class LinksView {
  constructor(svg) {
    this.svg = svg;
    this.paths = new Map();
    this.temp = null;
  }

  set(toId, input, from, to, type) {
    const key = linkKey(toId, input);
    let path = this.paths.get(key);
    if (!path) {
      path = document.createElementNS(SVG, "path");
      path.classList.add("link");
      path.dataset.to = toId;
      path.dataset.input = input;
      this.svg.append(path);
      this.paths.set(key, path);
    }
    const color = typeColor(type);
    if (path.dataset.color !== color) {
      path.style.stroke = color;
      path.dataset.color = color;
    }
    path.setAttribute("d", curve(from, to));
  }

  remove(toId, input) {
    const key = linkKey(toId, input);
    this.paths.get(key)?.remove();
    this.paths.delete(key);
  }

  /** Drops every path whose key is not in `keep`. */
  retain(keep) {
    for (const [key, path] of this.paths) {
      if (!keep.has(key)) {
        path.remove();
        this.paths.delete(key);
      }
    }
  }

  setActive(toIds) {
    for (const path of this.paths.values()) path.classList.toggle("active", toIds.has(path.dataset.to));
  }

  showTemp(from, to, type, bad = false) {
    if (!this.temp) {
      this.temp = document.createElementNS(SVG, "path");
      this.temp.classList.add("temp");
      this.svg.append(this.temp);
    }
    this.temp.style.stroke = typeColor(type);
    this.temp.classList.toggle("bad", bad);
    this.temp.setAttribute("d", curve(from, to));
  }

  hideTemp() {
    this.temp?.remove();
    this.temp = null;
  }
}
