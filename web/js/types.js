// Socket types: their colours and which output may feed which input.

const TYPE_COLORS = {
  MODEL: "#b39ddb",
  CLIP: "#ffd54f",
  VAE: "#ff6e6e",
  CONDITIONING: "#ffa94d",
  LATENT: "#ff9cf9",
  IMAGE: "#64b5f6",
  MASK: "#81c784",
  CONTROL_NET: "#00d6a3",
  CLIP_VISION: "#a8dadc",
  CLIP_VISION_OUTPUT: "#ad7452",
  STYLE_MODEL: "#c2ffae",
  UPSCALE_MODEL: "#c792ea",
  NOISE: "#b0b0b0",
  SAMPLER: "#ecb4b4",
  SIGMAS: "#cdffcd",
  GUIDER: "#66ffff",
  INT: "#7dd3fc",
  FLOAT: "#a5b4fc",
  STRING: "#86efac",
  BOOLEAN: "#fca5a5",
  COMBO: "#d4d4d8",
};

/** A colour for any type name: the table above, else a stable hue from the name. */
export function typeColor(type) {
  if (TYPE_COLORS[type]) return TYPE_COLORS[type];
  let hash = 0;
  for (const char of String(type)) hash = (hash * 31 + char.charCodeAt(0)) | 0;
  return `hsl(${Math.abs(hash) % 360} 65% 66%)`;
}

function typeSet(type) {
  return String(type).split(",").map((part) => part.trim()).filter(Boolean);
}

/** ComfyUI's rule: the same type, "*" on either side, or a shared member of comma-separated unions. */
export function typesCompatible(outputType, inputType) {
  if (outputType === "*" || inputType === "*" || outputType === inputType) return true;
  const accepted = new Set(typeSet(inputType));
  return typeSet(outputType).some((part) => accepted.has(part) || part === "*");
}
