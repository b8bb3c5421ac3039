// Text chunks of a PNG (tEXt, zTXt, iTXt) read in the browser: where ComfyUI and diffgraph keep the workflow.

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const MAX_TEXT_BYTES = 64 * 1024 * 1024;

export function isPng(bytes) {
  return bytes.length >= 8 && SIGNATURE.every((b, i) => bytes[i] === b);
}

async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  const out = new Uint8Array(await new Response(stream).arrayBuffer());
  if (out.length > MAX_TEXT_BYTES) throw new Error("a compressed PNG text chunk is too large");
  return out;
}

// tEXt is Latin-1 by the standard, but many tools write UTF-8 there; valid UTF-8 is tried first.
function decodeText(bytes) {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return new TextDecoder("latin1").decode(bytes);
  }
}

async function parseChunk(kind, data) {
  const zero = data.indexOf(0);
  if (zero <= 0) return null;
  const key = new TextDecoder("latin1").decode(data.subarray(0, zero));
  const rest = data.subarray(zero + 1);
  if (kind === "tEXt") return [key, decodeText(rest)];
  if (kind === "zTXt") return [key, decodeText(await inflate(rest.subarray(1)))];
  // iTXt: compression flag, method, language\0, translated keyword\0, UTF-8 text
  const compressed = rest[0] === 1;
  let body = rest.subarray(2);
  for (let skip = 0; skip < 2; skip++) body = body.subarray(body.indexOf(0) + 1);
  const text = compressed ? await inflate(body) : body;
  return [key, new TextDecoder("utf-8").decode(text)];
}

/** {keyword: text} for every text chunk; throws when the bytes are not a PNG. */
export async function pngTextChunks(buffer) {
  const bytes = new Uint8Array(buffer);
  if (!isPng(bytes)) throw new Error("not a PNG file");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const texts = {};
  let offset = 8;
  while (offset + 8 <= bytes.length) {
    const length = view.getUint32(offset);
    const kind = String.fromCharCode(...bytes.subarray(offset + 4, offset + 8));
    const start = offset + 8;
    if (kind === "IEND" || start + length > bytes.length) break;
    if (kind === "tEXt" || kind === "zTXt" || kind === "iTXt") {
      const parsed = await parseChunk(kind, bytes.subarray(start, start + length));
      if (parsed) texts[parsed[0]] = parsed[1];
    }
    offset = start + length + 4; // data + CRC
  }
  return texts;
}
