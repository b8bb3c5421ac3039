// The current workflow kept in localStorage, so a reload (or a crash) loses nothing.

const WORKFLOW_KEY = "diffgraph.workflow.v1";
const CLIENT_KEY = "diffgraph.client-id";

export function saveWorkflow(data) {
  try {
    localStorage.setItem(WORKFLOW_KEY, JSON.stringify(data));
    return true;
  } catch {
    return false; // storage full or disabled: the canvas still works
  }
}

export function loadWorkflow() {
  try {
    const text = localStorage.getItem(WORKFLOW_KEY);
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

/** One id per browser tab session, kept across reloads so a reconnecting page gets its prompt's events. */
export function clientId() {
  let id = sessionStorage.getItem(CLIENT_KEY);
  if (!id) {
    id = `canvas-${crypto.randomUUID?.() ?? Math.random().toString(36).slice(2)}`;
    sessionStorage.setItem(CLIENT_KEY, id);
  }
  return id;
}
