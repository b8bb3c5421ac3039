// The server's HTTP API (ComfyUI-compatible routes). Same origin; an auth token travels in the cookie the server
// sets when the page is opened with ?token=.

export class ApiError extends Error {
  constructor(message, status, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

async function readBody(response) {
  const text = await response.text();
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return text;
  }
}

function errorMessage(body, response) {
  if (body && typeof body === "object" && body.error) {
    return typeof body.error === "string" ? body.error : body.error.message ?? JSON.stringify(body.error);
  }
  return typeof body === "string" && body ? body.slice(0, 300) : `${response.status} ${response.statusText}`;
}

export class Api {
  constructor(base = "") {
    this.base = base;
  }

  async request(path, { method = "GET", json, body, headers = {} } = {}) {
    const init = { method, headers: { ...headers }, credentials: "same-origin" };
    if (json !== undefined) {
      init.body = JSON.stringify(json);
      init.headers["Content-Type"] = "application/json";
    } else if (body !== undefined) {
      init.body = body;
    }
    const response = await fetch(this.base + path, init);
    const data = await readBody(response);
    if (!response.ok) throw new ApiError(errorMessage(data, response), response.status, data);
    return data;
  }

  objectInfo() {
    return this.request("/object_info");
  }

  /** → {prompt_id, number}; a 400 carries {error, node_errors} in ApiError.body. */
  queuePrompt(prompt, clientId, workflow) {
    return this.request("/prompt", {
      method: "POST",
      json: { prompt, client_id: clientId, extra_data: { extra_pnginfo: { workflow } } },
    });
  }

  queue() {
    return this.request("/queue");
  }

  deleteQueued(promptIds) {
    return this.request("/queue", { method: "POST", json: { delete: promptIds } });
  }

  clearQueue() {
    return this.request("/queue", { method: "POST", json: { clear: true } });
  }

  interrupt(promptId) {
    return this.request("/interrupt", { method: "POST", json: promptId ? { prompt_id: promptId } : {} });
  }

  history(maxItems = 30) {
    return this.request(`/history?max_items=${maxItems}`);
  }

  clearHistory() {
    return this.request("/history", { method: "POST", json: { clear: true } });
  }

  deleteHistory(promptIds) {
    return this.request("/history", { method: "POST", json: { delete: promptIds } });
  }

  /** Stores an image in the input folder → {name, subfolder, type}. */
  uploadImage(file, { subfolder = "", overwrite = false } = {}) {
    const form = new FormData();
    form.append("image", file, file.name || "pasted.png");
    form.append("type", "input");
    form.append("subfolder", subfolder);
    form.append("overwrite", String(overwrite));
    return this.request("/upload/image", { method: "POST", body: form });
  }

  /** Any workflow file (JSON text or image bytes) → {prompt, report} with our node names; 404/501 when the
   *  server has no converter. */
  convert(blob) {
    const type = blob.type || "application/octet-stream";
    return this.request("/convert?our_names=true", { method: "POST", body: blob, headers: { "Content-Type": type } });
  }

  viewUrl({ filename, subfolder = "", type = "output" }) {
    const query = new URLSearchParams({ filename, subfolder, type });
    return `${this.base}/view?${query}`;
  }

  socketUrl(clientId) {
    const url = new URL(`${this.base}/ws`, location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("clientId", clientId);
    return url.href;
  }
}
