// The queue panel: what runs now (with its progress and a stop button), what waits (cancel one, clear all), and
// the history (thumbnails; load a past run's workflow back onto the canvas).

import { toast } from "./toast.js";

const HISTORY_ITEMS = 30;
const REFRESH_DELAY_MS = 120;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function button(text, title, onClick, className = "") {
  const b = el("button", className, text);
  b.title = title;
  b.addEventListener("click", onClick);
  return b;
}

/** [number, prompt_id, prompt, extra_data, outputs] → what the panel shows about it. */
function describe(item) {
  const [number, promptId, prompt, extra] = item;
  const workflow = extra?.extra_pnginfo?.workflow;
  const name = workflow?.canvas?.name ?? workflow?.name ?? "workflow";
  return { number, promptId, prompt, workflow, name, count: Object.keys(prompt ?? {}).length };
}

export class QueuePanel {
  constructor(app, root, countEl) {
    this.app = app;
    this.root = root;
    this.countEl = countEl;
    this.timer = 0;
    this.progress = null;
    this.remaining = 0;
  }

  get open() {
    return !this.root.hidden;
  }

  toggle(force) {
    this.root.hidden = force === undefined ? !this.root.hidden : !force;
    if (this.open) this.refresh();
  }

  setRemaining(n) {
    this.remaining = n;
    this.countEl.textContent = String(n);
    this.countEl.classList.toggle("busy", n > 0);
    this.refreshSoon();
  }

  onEvent(type, data) {
    if (type === "progress") {
      this.progress = { value: data.value, max: data.max };
      const bar = this.root.querySelector(".qp-item.running .qp-bar > div");
      if (bar) bar.style.width = `${(100 * data.value) / Math.max(1, data.max)}%`;
    } else if (type.startsWith("execution_")) {
      if (type !== "execution_start" && type !== "execution_cached") this.progress = null;
      this.refreshSoon();
    }
  }

  refreshSoon() {
    if (!this.open) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), REFRESH_DELAY_MS);
  }

  async refresh() {
    if (!this.open) return;
    const { api } = this.app;
    try {
      const [queue, history] = await Promise.all([api.queue(), api.history(HISTORY_ITEMS)]);
      this.render(queue, history);
    } catch (error) {
      this.root.replaceChildren(el("div", "qp-section qp-empty", `Could not read the queue: ${error.message}`));
    }
  }

  async act(action, done) {
    try {
      await action();
      if (done) toast(done);
    } catch (error) {
      toast(error.message, { kind: "error" });
    }
    this.refresh();
  }

  section(title, actions, items, emptyText) {
    const box = el("section", "qp-section");
    const head = el("div", "qp-head");
    head.append(el("h3", "", title), ...actions);
    box.append(head);
    if (!items.length) box.append(el("div", "qp-empty", emptyText));
    box.append(...items);
    return box;
  }

  render(queue, history) {
    const { api } = this.app;
    const running = (queue.queue_running ?? []).map(describe);
    const pending = (queue.queue_pending ?? []).map(describe).sort((a, b) => a.number - b.number);
    const done = Object.entries(history ?? {}).map(([id, entry]) => ({ id, entry, ...describe(entry.prompt ?? []) }))
      .sort((a, b) => b.number - a.number);
    const runningItems = running.map((item) => {
      const row = this.item(item, `running · ${item.count} nodes`, null);
      row.classList.add("running");
      const bar = el("div", "qp-bar");
      const fill = el("div");
      if (this.progress) fill.style.width = `${(100 * this.progress.value) / Math.max(1, this.progress.max)}%`;
      bar.append(fill);
      row.querySelector(".meta").append(bar);
      row.append(button("Stop", "Interrupt this run", () => this.act(() => api.interrupt(item.promptId)), "danger"));
      return row;
    });
    const pendingItems = pending.map((item) => {
      const row = this.item(item, `waiting · ${item.count} nodes`, null);
      row.append(button("✕", "Remove from the queue", () => this.act(() => api.deleteQueued([item.promptId]))));
      return row;
    });
    const historyItems = done.map((item) => {
      const images = Object.values(item.entry.outputs ?? {}).flatMap((o) => o.images ?? []);
      const status = item.entry.status?.status_str ?? (item.entry.status?.completed ? "success" : "");
      const row = this.item(item, `${status || "done"} · ${images.length} image${images.length === 1 ? "" : "s"}`,
        images[0] ? api.viewUrl(images[0]) : null);
      row.querySelector(".sub").classList.add(`status-${status}`);
      row.append(button("Load", "Open this run's workflow", () => this.app.files.loadHistoryItem(item)));
      row.append(button("✕", "Remove from the history", () => this.act(() => api.deleteHistory([item.id]))));
      return row;
    });
    this.root.replaceChildren(
      this.section("Running", [], runningItems, "Nothing running"),
      this.section("Pending", pending.length ? [button("Clear", "Remove every waiting run",
        () => this.act(() => api.clearQueue(), "Queue cleared"))] : [], pendingItems, "Nothing waiting"),
      this.section("History", done.length ? [button("Clear", "Forget the history",
        () => this.act(() => api.clearHistory()))] : [], historyItems, "No runs yet"),
    );
  }

  item(item, subText, thumbUrl) {
    const row = el("div", "qp-item");
    row.dataset.promptId = item.promptId;
    const thumb = el(thumbUrl ? "img" : "div", "thumb");
    if (thumbUrl) thumb.src = thumbUrl;
    const meta = el("div", "meta");
    meta.append(el("div", "title", `#${item.number} ${item.name}`), el("div", "sub", subText));
    row.append(thumb, meta);
    return row;
  }
}
