// Saving and opening: Ctrl+S downloads diffgraph's workflow JSON; Ctrl+O, drag-drop and paste open diffgraph
// workflows, PNGs made by diffgraph or ComfyUI, ComfyUI API-format JSON, and (through the server's POST /convert)
// ComfyUI UI-format files and A1111 images. An image with no workflow becomes a Load Image node.

import { apiToGraph, looksLikeApi } from "./api_format.js";
import { checkGraph, needsReport, showImportReport } from "./import_report.js";
import { isPng, pngTextChunks } from "./png.js";
import { toast } from "./toast.js";
import { isUiWorkflow, isWorkflowFile, uiGroups, uiPositions } from "./workflow_file.js";

const IMAGE_TYPES = /^image\/(png|jpeg|webp|gif|bmp)$/;

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function baseName(name) {
  return String(name || "workflow").replace(/\.[^.]+$/, "");
}

export class FileIO {
  constructor(app) {
    this.app = app;
    this.input = document.getElementById("file-input");
    this.input.addEventListener("change", () => {
      const file = this.input.files?.[0];
      this.input.value = "";
      if (file) this.loadFile(file);
    });
    this.installDrop(app.editor.canvas);
  }

  get editor() {
    return this.app.editor;
  }

  save() {
    const data = this.app.workflowFile();
    const blob = new Blob([JSON.stringify(data, null, 1)], { type: "application/json" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = `${this.editor.graph.name.replace(/[\\/:*?"<>|]+/g, "_") || "workflow"}.json`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  }

  open() {
    this.input.click();
  }

  installDrop(canvas) {
    let veil = null;
    let marked = null;
    const clear = () => {
      veil?.remove();
      veil = null;
      marked?.classList.remove("drop-image");
      marked = null;
    };
    canvas.addEventListener("dragover", (e) => {
      if (!e.dataTransfer?.types.includes("Files")) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = "copy";
      const node = this.imageNodeAt(e.clientX, e.clientY);
      if (marked !== node?.el) {
        marked?.classList.remove("drop-image");
        marked = node?.el ?? null;
        marked?.classList.add("drop-image");
      }
      if (!veil && !node) {
        veil = Object.assign(document.createElement("div"), { className: "drop-veil", textContent: "Drop to open" });
        document.body.append(veil);
      } else if (node) {
        veil?.remove();
        veil = null;
      }
    });
    canvas.addEventListener("dragleave", (e) => {
      if (!canvas.contains(e.relatedTarget)) clear();
    });
    canvas.addEventListener("drop", (e) => {
      const file = e.dataTransfer?.files?.[0];
      clear();
      if (!file) return;
      e.preventDefault();
      this.loadFile(file, { clientX: e.clientX, clientY: e.clientY });
    });
  }

  /** The node under a point that takes an uploaded image (Load Image), with its input name. */
  imageNodeAt(clientX, clientY) {
    const el = document.elementFromPoint(clientX, clientY)?.closest?.(".node");
    const view = el ? this.editor.views.get(el.dataset.id) : null;
    const input = view?.def.inputs.find((i) => i.widget === "image");
    return input ? { el, view, input: input.name } : null;
  }

  async loadFile(file, point = null) {
    try {
      const isImage = IMAGE_TYPES.test(file.type);
      const target = point && isImage ? this.imageNodeAt(point.clientX, point.clientY) : null;
      if (target) {
        await this.editor.uploadInto(target.view.node.id, target.input, file);
        toast(`Uploaded ${file.name}`);
        return;
      }
      const bytes = new Uint8Array(await file.arrayBuffer());
      if (isPng(bytes)) return await this.loadPng(file, bytes, point);
      if (isImage) return await this.loadOtherImage(file, point);
      const data = parseJson(new TextDecoder().decode(bytes));
      if (data === undefined) throw new Error(`${file.name} is neither JSON nor an image`);
      await this.importData(data, baseName(file.name), file);
    } catch (error) {
      toast(`Could not open ${file.name}: ${error.message}`, { kind: "error", timeout: 8000 });
    }
  }

  /** The kind of workflow a parsed JSON value is, or null. */
  recognise(data) {
    if (isWorkflowFile(data)) return "diffgraph";
    if (isUiWorkflow(data)) return "ui";
    if (looksLikeApi(data)) return "api";
    if (looksLikeApi(data?.prompt) || looksLikeApi(data?.api)) return "wrapped-api";
    if (data?.workflow && typeof data.workflow === "object") return this.recognise(data.workflow) && "wrapped";
    return null;
  }

  async importData(data, name, file = null) {
    const kind = this.recognise(data);
    if (kind === "diffgraph") return this.loadOwn(data);
    if (kind === "ui") {
      const blob = file ?? new Blob([JSON.stringify(data)], { type: "application/json" });
      return this.convert(blob, name, uiPositions(data), { groups: uiGroups(data) });
    }
    if (kind === "api" || kind === "wrapped-api") {
      const api = kind === "api" ? data : looksLikeApi(data.prompt) ? data.prompt : data.api;
      return this.importApi(api, name, () => file ?? new Blob([JSON.stringify(api)], { type: "application/json" }));
    }
    if (kind === "wrapped") return this.importData(data.workflow, name);
    throw new Error("not a workflow (expected diffgraph's, ComfyUI's UI or API format)");
  }

  loadOwn(data, { report = true } = {}) {
    this.editor.load(data.canvas, { view: data.canvas.view ?? null, keepHistory: true });
    const checked = checkGraph(this.editor.graph, this.app.schema);
    if (report && needsReport(checked)) showImportReport(`Opened “${this.editor.graph.name}”`, checked);
  }

  loadApi(api, name, { positions = {}, groups = [], report = null, warnings: extra = [] } = {}) {
    const { graph, warnings } = apiToGraph(api, this.app.schema, { positions, name });
    graph.groups = groups;
    this.editor.load(graph.toJSON(), { keepHistory: true });
    const allWarnings = [...extra, ...warnings];
    const shown = report ?? checkGraph(this.editor.graph, this.app.schema);
    if (report || needsReport(shown, allWarnings)) {
      showImportReport(`Imported “${name}”`, shown, { warnings: allWarnings });
    }
  }

  /** An API graph in our node names opens here; one in other tools' names (aliases whose inputs may be renamed)
   *  goes through the server's converter, which knows the renames — or is mapped here by name when it has none. */
  async importApi(api, name, payload) {
    const foreign = Object.values(api).some((node) => !this.app.schema.defs.has(node.class_type));
    if (!foreign) return this.loadApi(api, name);
    try {
      return await this.convert(payload(), name, {}, { quiet: true });
    } catch (error) {
      if (![404, 405, 501].includes(error.status)) throw error;
      return this.loadApi(api, name, { warnings: ["the server has no converter: node types were mapped by name only"] });
    }
  }

  async loadPng(file, bytes, point) {
    const texts = await pngTextChunks(bytes.buffer);
    const name = baseName(file.name);
    const workflow = texts.workflow ? parseJson(texts.workflow) : undefined;
    if (isWorkflowFile(workflow)) return this.loadOwn(workflow);
    const prompt = texts.prompt ? parseJson(texts.prompt) : undefined;
    if (isUiWorkflow(workflow)) return this.convert(file, name, uiPositions(workflow), { groups: uiGroups(workflow) });
    if (looksLikeApi(prompt)) return this.importApi(prompt, name, () => file);
    if (texts.parameters) return this.convert(file, name, {});
    return this.imageAsNode(file, point);
  }

  async loadOtherImage(file, point) {
    try {
      await this.convert(file, baseName(file.name), {}, { quiet: true });
    } catch {
      await this.imageAsNode(file, point);
    }
  }

  /** POST /convert (ComfyUI UI format, A1111 parameters) → the API graph and the server's import report. */
  async convert(blob, name, positions, { quiet = false, groups = [] } = {}) {
    let answer;
    try {
      answer = await this.app.api.convert(blob);
    } catch (error) {
      if (quiet) throw error;
      if (error.status === 404 || error.status === 405 || error.status === 501) {
        throw new Error("this server cannot convert ComfyUI UI-format workflows (no POST /convert route)");
      }
      throw error;
    }
    const api = answer?.prompt ?? answer?.api ?? answer?.graph;
    if (!looksLikeApi(api)) throw new Error("the server's conversion returned no graph");
    this.loadApi(api, name, { positions, groups, report: answer.report ?? {} });
  }

  async imageAsNode(file, point) {
    const def = this.app.schema.all().find((d) => d.inputs.some((i) => i.widget === "image"));
    if (!def) throw new Error("the image carries no workflow");
    const at = point ? this.editor.view.toWorld(point.clientX, point.clientY) : this.app.interaction.pointerWorld();
    const node = this.editor.addNode(def.name, at);
    this.editor.setSelection([node.id]);
    const input = def.inputs.find((i) => i.widget === "image");
    await this.editor.uploadInto(node.id, input.name, file);
    toast(`${file.name} has no workflow: added it as a ${def.displayName} node`);
  }

  /** A pasted image goes into the selected Load Image node, or a new one. */
  async pasteImage(file) {
    try {
      const view = [...this.editor.selection].map((id) => this.editor.views.get(id))
        .find((v) => v?.def.inputs.some((i) => i.widget === "image"));
      if (view) {
        await this.editor.uploadInto(view.node.id, view.def.inputs.find((i) => i.widget === "image").name, file);
      } else {
        await this.imageAsNode(file, null);
      }
    } catch (error) {
      toast(`Could not paste the image: ${error.message}`, { kind: "error" });
    }
  }

  loadHistoryItem(item) {
    if (isWorkflowFile(item.workflow)) this.loadOwn(item.workflow);
    else if (looksLikeApi(item.prompt)) this.loadApi(item.prompt, `run #${item.number}`);
    else toast("That run has no workflow to load", { kind: "error" });
  }
}
