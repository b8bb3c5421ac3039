// The server's event stream (/ws): JSON events {type, data} and binary preview frames
// (4-byte big-endian event type 1, 4-byte image format 1 = JPEG / 2 = PNG, then the image). Reconnects by itself.

const PREVIEW_EVENT = 1;
const IMAGE_FORMATS = { 1: "image/jpeg", 2: "image/png" };

export class EventSocket {
  constructor(url, { onEvent, onPreview, onState }) {
    this.url = url;
    this.onEvent = onEvent;
    this.onPreview = onPreview;
    this.onState = onState;
    this.delay = 500;
    this.closed = false;
    this.connect();
  }

  connect() {
    this.onState("connecting");
    const ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      this.delay = 500;
      this.onState("online");
    };
    ws.onmessage = (message) => this.receive(message.data);
    ws.onclose = () => {
      this.onState("offline");
      if (!this.closed) setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 8000);
    };
    this.ws = ws;
  }

  receive(data) {
    if (typeof data === "string") {
      let event;
      try {
        event = JSON.parse(data);
      } catch {
        return;
      }
      if (event && typeof event.type === "string") this.onEvent(event.type, event.data ?? {});
      return;
    }
    if (data.byteLength < 8) return;
    const view = new DataView(data);
    if (view.getUint32(0) !== PREVIEW_EVENT) return;
    const mime = IMAGE_FORMATS[view.getUint32(4)] ?? "image/jpeg";
    this.onPreview(new Blob([data.slice(8)], { type: mime }));
  }

  close() {
    this.closed = true;
    this.ws?.close();
  }
}
