// The canvas application: loads the node types, restores (or creates) the workflow, connects to the server's
// events, and wires the top bar. `window.diffgraph` is the running app (handy in the console and in tests).

import { Api } from "./api.js";
import { autoLayout } from "./layout.js";
import { Clipboard } from "./clipboard.js";
import { applyControlAfterGenerate } from "./commands.js";
import { Editor } from "./editor.js";
import { Execution } from "./execution.js";
import { FileIO } from "./file_io.js";
import { fillDefaults } from "./graph.js";
import { showHelp } from "./help.js";
import { Interaction } from "./interaction.js";
import { installShortcuts } from "./keyboard.js";
import { Linking } from "./linking.js";
import { openContextMenu } from "./menus.js";
import { QueuePanel } from "./queue_panel.js";
import { Schema } from "./schema.js";
import { openSearch } from "./search.js";
import { EventSocket } from "./socket.js";
import { clientId, loadWorkflow, saveWorkflow } from "./storage.js";
import { toast } from "./toast.js";
import { buildWorkflowFile, isWorkflowFile } from "./workflow_file.js";

const DEFAULT_WORKFLOW_URL = "default_workflow.json";
const AUTOSAVE_DELAY_MS = 300;

const $ = (id) => document.getElementById(id);

/** Validation errors of a 400 answer → node id → [{message, input}]. */
export function validationErrors(body) {
  const errors = new Map();
  for (const [id, entry] of Object.entries(body?.node_errors ?? {})) {
    errors.set(String(id), (entry.errors ?? []).map((e) => {
      const input = e.extra_info?.input_name;
      let details = String(e.details ?? "");
      if (input && details.startsWith(`${input}: `)) details = details.slice(input.length + 2); // shown on its row
      if (details === input || String(e.message).includes(details)) details = "";
      return { message: details ? `${e.message}: ${details}` : e.message, input };
    }));
  }
  return errors;
}

class App {
  constructor() {
    this.api = new Api();
    this.clientId = clientId();
  }

  async start() {
    this.schema = new Schema(await this.api.objectInfo());
    this.editor = new Editor({ canvas: $("canvas"), world: $("world"), schema: this.schema, api: this.api });
    this.openSearch = (options) => {
      const at = options.clientX === undefined ? this.editor.view.toClient(...this.interaction.pointerWorld()) : null;
      return openSearch(this.schema, {
        clientX: options.clientX ?? at[0],
        clientY: options.clientY ?? at[1],
        filter: options.filter,
        onPick: options.onPick ?? ((def) => this.addNodeAt(def, options.clientX, options.clientY)),
      });
    };
    this.linking = new Linking(this.editor, { openSearch: this.openSearch });
    this.interaction = new Interaction(this.editor, {
      linking: this.linking,
      openSearch: this.openSearch,
      openContextMenu: (e) => openContextMenu(this, e),
    });
    this.clipboard = new Clipboard(this);
    this.files = new FileIO(this);
    this.queuePanel = new QueuePanel(this, $("queue-panel"), $("queue-count"));
    this.execution = new Execution(this);
    installShortcuts(this);
    this.wireTopBar();
    this.installAutosave();
    const stored = loadWorkflow();
    if (isWorkflowFile(stored)) this.editor.load(stored.canvas, { view: stored.canvas.view ?? null });
    else await this.loadDefault();
    this.socket = new EventSocket(this.api.socketUrl(this.clientId), {
      onEvent: (type, data) => this.execution.onEvent(type, data),
      onPreview: (blob) => this.execution.onPreview(blob),
      onState: (state) => this.showConnection(state),
    });
    // Ready once a frame with the nodes in it has been painted (the frame after the first one).
    requestAnimationFrame(() => requestAnimationFrame(() => {
      this.readyAt = performance.now();
      document.body.dataset.ready = "true";
    }));
  }

  addNodeAt(def, clientX, clientY) {
    const at = clientX === undefined ? this.interaction.pointerWorld() : this.editor.view.toWorld(clientX, clientY);
    const node = this.editor.addNode(def.name, at);
    this.editor.setSelection([node.id]);
    this.editor.commit();
    return node;
  }

  workflowFile() {
    return buildWorkflowFile(this.editor);
  }

  /** The default workflow (web/default_workflow.json); a model it names that is not here becomes the first one. */
  async loadDefault({ keepHistory = false } = {}) {
    let data;
    try {
      data = await this.api.request(`/${DEFAULT_WORKFLOW_URL}`);
    } catch (error) {
      toast(`No default workflow: ${error.message}`, { kind: "error" });
      this.editor.load({ name: "Untitled", nodes: [] }, { keepHistory });
      return;
    }
    for (const node of data.canvas.nodes) {
      for (const input of this.schema.get(node.type)?.inputs ?? []) {
        const value = node.values?.[input.name];
        if (input.choices?.length && value !== undefined && !input.choices.includes(String(value))) {
          node.values[input.name] = input.choices[0];
        }
      }
    }
    this.editor.load(data.canvas, { keepHistory });
  }

  async queue() {
    const file = this.workflowFile();
    if (!Object.keys(file.api).length) {
      toast("Nothing to run: the workflow is empty", { kind: "error" });
      return null;
    }
    this.editor.showErrors(new Map());
    try {
      const answer = await this.api.queuePrompt(file.api, this.clientId, file);
      applyControlAfterGenerate(this.editor);
      this.queuePanel.refreshSoon();
      return answer.prompt_id;
    } catch (error) {
      if (error.status === 400 && error.body?.node_errors) {
        const errors = validationErrors(error.body);
        this.editor.showErrors(errors);
        const count = [...errors.values()].reduce((n, list) => n + list.length, 0);
        const [id, [problem] = []] = [...errors.entries()][0] ?? [];
        const node = this.editor.graph.get(id);
        const where = problem ? ` (${node ? this.editor.graph.titleOf(node, this.schema) : `node ${id}`}` +
          `${problem.input ? ` › ${problem.input}` : ""}: ${problem.message})` : "";
        toast(`${error.message}${count > 1 ? ` — ${count} problems` : ""}${where}`, { kind: "error", timeout: 8000 });
      } else {
        toast(`Could not queue: ${error.message}`, { kind: "error", timeout: 8000 });
      }
      return null;
    }
  }

  /** Re-reads /object_info (new nodes, new model files) and redraws the nodes with it. */
  async refreshSchema() {
    try {
      this.schema = new Schema(await this.api.objectInfo());
    } catch (error) {
      toast(`Refresh failed: ${error.message}`, { kind: "error" });
      return;
    }
    this.editor.schema = this.schema;
    for (const node of this.editor.graph.nodes.values()) fillDefaults(node, this.schema.get(node.type));
    this.editor.renderAll();
    toast("Node list and model files refreshed", { kind: "ok", timeout: 2000 });
  }

  arrange() {
    autoLayout(this.editor.graph, this.schema);
    this.editor.renderAll();
    this.editor.commit();
    this.editor.fitView();
  }

  showHelp() {
    showHelp();
  }

  /** The default workflow in place of the current one (Ctrl+Z brings the current one back). */
  async newWorkflow() {
    await this.loadDefault({ keepHistory: true });
  }

  showConnection(state) {
    const el = $("connection");
    el.className = `connection ${state}`;
    el.textContent = { online: "connected", offline: "reconnecting…", connecting: "connecting…" }[state] ?? state;
  }

  wireTopBar() {
    $("btn-queue").addEventListener("click", () => this.queue());
    $("btn-save").addEventListener("click", () => this.files.save());
    $("btn-open").addEventListener("click", () => this.files.open());
    $("btn-new").addEventListener("click", () => this.newWorkflow());
    $("btn-refresh").addEventListener("click", () => this.refreshSchema());
    $("btn-help").addEventListener("click", () => this.showHelp());
    $("btn-queue-panel").addEventListener("click", () => this.queuePanel.toggle());
    const name = $("workflow-name");
    name.addEventListener("change", () => {
      this.editor.graph.name = name.value.trim() || "Untitled";
      this.editor.commit();
    });
    name.addEventListener("keydown", (e) => e.key === "Enter" && name.blur());
    this.editor.addEventListener("change", () => (name.value = this.editor.graph.name));
  }

  installAutosave() {
    let timer = 0;
    const save = () => {
      clearTimeout(timer);
      timer = 0;
      saveWorkflow(this.workflowFile());
    };
    const later = () => {
      clearTimeout(timer);
      timer = setTimeout(save, AUTOSAVE_DELAY_MS);
    };
    for (const type of ["change", "view", "dirty"]) this.editor.addEventListener(type, later);
    window.addEventListener("pagehide", save);
    window.addEventListener("beforeunload", save);
    const empty = $("empty-hint");
    this.editor.addEventListener("change", () => (empty.hidden = this.editor.graph.nodes.size > 0));
  }
}

const app = new App();
window.diffgraph = app;
app.start().catch((error) => {
  console.error(error);
  toast(`The canvas could not start: ${error.message}`, { kind: "error", timeout: 60000 });
});
