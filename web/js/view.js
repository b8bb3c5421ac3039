// Pan and zoom: one CSS transform on the world layer. While the view moves the layer is composited
// (will-change), and once it rests it is re-rasterised so text is sharp at every zoom.

const MIN_ZOOM = 0.1;
const MAX_ZOOM = 3;
const GRID = 24;
const SETTLE_MS = 180;

export class Viewport {
  constructor(canvas, world, onChange) {
    this.canvas = canvas;
    this.world = world;
    this.onChange = onChange;
    this.x = 0;
    this.y = 0;
    this.zoom = 1;
    this.settleTimer = 0;
    this.frame = 0;
    this.rect = canvas.getBoundingClientRect();
    new ResizeObserver(() => (this.rect = canvas.getBoundingClientRect())).observe(canvas);
  }

  /** Applies the transform on the next frame (many wheel events per frame cost one style write). */
  apply() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.world.classList.add("moving");
      this.world.style.transform = `translate(${this.x}px, ${this.y}px) scale(${this.zoom})`;
      const size = GRID * this.zoom;
      this.canvas.style.backgroundSize = `${size}px ${size}px`;
      this.canvas.style.backgroundPosition = `${this.x % size}px ${this.y % size}px`;
      clearTimeout(this.settleTimer);
      this.settleTimer = setTimeout(() => this.world.classList.remove("moving"), SETTLE_MS);
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
