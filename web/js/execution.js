// A run as the canvas shows it: the executing node lit, its progress bar, live sampler previews, the images each
// output node produced, and a runtime error on the node that raised it. Driven by the server's WebSocket events.

import { toast } from "./toast.js";

export class Execution {
  constructor(app) {
    this.app = app;
    this.promptId = null;
    this.running = null;
    this.cached = new Set();
    this.outputs = new Map(); // node id → image URLs, re-applied when a node view is rebuilt
    this.previewUrl = null;
    this.handlers = {
      status: (d) => app.queuePanel.setRemaining(d.status?.exec_info?.queue_remaining ?? 0),
      execution_start: (d) => this.start(d.prompt_id),
      execution_cached: (d) => this.markCached(d.nodes ?? []),
      executing: (d) => this.setRunning(d.node ?? null, d.prompt_id),
      progress: (d) => this.progress(d),
      executed: (d) => this.executed(d.node, d.output ?? {}),
      execution_error: (d) => this.error(d),
      execution_interrupted: (d) => this.finish(d.prompt_id, "Interrupted"),
      execution_success: (d) => this.finish(d.prompt_id, null),
    };
    app.editor.addEventListener("viewcreated", (e) => this.decorate(e.detail));
  }

  get editor() {
    return this.app.editor;
  }

  onEvent(type, data) {
    this.handlers[type]?.(data);
    this.app.queuePanel.onEvent(type, data);
  }

  onPreview(blob) {
    const id = this.running;
    if (!id) return;
    if (this.previewUrl) URL.revokeObjectURL(this.previewUrl);
    this.previewUrl = URL.createObjectURL(blob);
    this.outputs.set(id, { urls: [this.previewUrl], caption: "live preview" });
    this.editor.views.get(id)?.setImages([this.previewUrl], "live preview");
  }

  decorate(view) {
    const id = view.node.id;
    const shown = this.outputs.get(id);
    if (shown) view.setImages(shown.urls, shown.caption);
    if (this.running === id) view.setRunning(true);
    if (this.cached.has(id)) view.setCached(true);
  }

  start(promptId) {
    this.promptId = promptId;
    for (const id of this.cached) this.editor.views.get(id)?.setCached(false);
    this.cached.clear();
    for (const view of this.editor.views.values()) view.setProgress(0, 0);
    this.editor.showErrors(new Map());
  }

  markCached(ids) {
    for (const id of ids) {
      this.cached.add(String(id));
      this.editor.views.get(String(id))?.setCached(true);
    }
  }

  setRunning(id, promptId) {
    if (this.running) {
      const previous = this.editor.views.get(this.running);
      previous?.setRunning(false);
      previous?.setProgress(0, 0);
    }
    this.running = id === null ? null : String(id);
    if (promptId) this.promptId = promptId;
    const view = this.running ? this.editor.views.get(this.running) : null;
    view?.setRunning(true);
    this.editor.links.setActive(new Set(this.running ? [this.running] : []));
  }

  progress({ value, max, node }) {
    const id = node === undefined || node === null ? this.running : String(node);
    if (id) this.editor.views.get(id)?.setProgress(value, max);
  }

  executed(node, output) {
    const id = String(node);
    const images = [...(output.images ?? []), ...(output.gifs ?? [])];
    if (!images.length) return;
    const urls = images.map((image) => this.app.api.viewUrl(image));
    this.outputs.set(id, { urls, caption: "" });
    this.editor.views.get(id)?.setImages(urls);
  }

  error(d) {
    const id = String(d.node_id ?? "");
    const message = `${d.exception_type ? `${d.exception_type}: ` : ""}${d.exception_message ?? "failed"}`;
    if (id && this.editor.graph.get(id)) this.editor.showErrors(new Map([[id, [{ message }]]]));
    const where = d.node_type ? ` in ${d.node_type} (node ${id})` : "";
    toast(`Run failed${where}: ${d.exception_message ?? ""}`, { kind: "error", timeout: 8000 });
    this.finish(d.prompt_id, null);
  }

  finish(promptId, message) {
    this.setRunning(null);
    for (const id of this.cached) this.editor.views.get(id)?.setCached(false);
    this.cached.clear();
    if (message) toast(message);
  }
}
