// Pan and zoom: one CSS transform on the world layer (a composited layer: moving it repaints nothing; Chromium
// re-rasterises it sharp once a zoom rests).

const MIN_ZOOM = 0.1;
const MAX_ZOOM = 3;
const FAR_ZOOM = 0.3;
const GRID = 24;
const GRID_SETTLE_MS = 150;

export class Viewport {
  constructor(canvas, world, onChange) {
    this.canvas = canvas;
    this.world = world;
    this.onChange = onChange;
    this.x = 0;
    this.y = 0;
    this.zoom = 1;
    this.far = false;
    this.frame = 0;
    this.grid = world.querySelector("#grid");
    this.gridTimer = 0;
    this.rect = canvas.getBoundingClientRect();
    new ResizeObserver(() => {
      this.rect = canvas.getBoundingClientRect();
      this.placeGrid();
    }).observe(canvas);
  }

  /** Covers the visible world, and as much again around it, with the grid (on the 24 px lattice). */
  placeGrid() {
    const [x0, y0] = this.toWorld(this.rect.left, this.rect.top);
    const [x1, y1] = this.toWorld(this.rect.right, this.rect.bottom);
    const [w, h] = [x1 - x0, y1 - y0];
    const left = Math.floor((x0 - w) / GRID) * GRID;
    const top = Math.floor((y0 - h) / GRID) * GRID;
    Object.assign(this.grid.style, {
      left: `${left}px`, top: `${top}px`, width: `${Math.ceil(3 * w / GRID + 1) * GRID}px`,
      height: `${Math.ceil(3 * h / GRID + 1) * GRID}px`,
    });
  }

  /** Applies the transform on the next frame (many wheel events per frame cost one style write). */
  apply() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.world.style.transform = `translate(${this.x}px, ${this.y}px) scale(${this.zoom})`;
      clearTimeout(this.gridTimer);
      this.gridTimer = setTimeout(() => this.placeGrid(), GRID_SETTLE_MS);
      const far = this.zoom < FAR_ZOOM; // a grid that dense is only noise
      if (far !== this.far) this.canvas.classList.toggle("far", (this.far = far));
      this.onChange?.();
    });
  }

  set({ x = this.x, y = this.y, zoom = this.zoom }) {
    this.x = x;
    this.y = y;
    this.zoom = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, zoom));
    this.apply();
  }

  toWorld(clientX, clientY) {
    return [(clientX - this.rect.left - this.x) / this.zoom, (clientY - this.rect.top - this.y) / this.zoom];
  }

  toClient(x, y) {
    return [x * this.zoom + this.x + this.rect.left, y * this.zoom + this.y + this.rect.top];
  }

  panBy(dx, dy) {
    this.x += dx;
    this.y += dy;
    this.apply();
  }

  /** Zooms by `factor` keeping the world point under (clientX, clientY) where it is. */
  zoomAt(clientX, clientY, factor) {
    const zoom = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, this.zoom * factor));
    const [wx, wy] = this.toWorld(clientX, clientY);
    this.zoom = zoom;
    this.x = clientX - this.rect.left - wx * zoom;
    this.y = clientY - this.rect.top - wy * zoom;
    this.apply();
  }

  /** Shows the world rectangle [x, y, w, h] whole, at most at 100%. */
  fit([x, y, w, h], margin = 40) {
    const width = Math.max(1, this.rect.width - 2 * margin);
    const height = Math.max(1, this.rect.height - 2 * margin);
    const zoom = Math.min(1, width / Math.max(w, 1), height / Math.max(h, 1));
    this.set({
      zoom,
      x: margin + (width - w * zoom) / 2 - x * zoom,
      y: margin + (height - h * zoom) / 2 - y * zoom,
    });
  }

  toJSON() {
    return { x: Math.round(this.x), y: Math.round(this.y), zoom: Number(this.zoom.toFixed(4)) };
  }
}
