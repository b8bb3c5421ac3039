"""The procedural data set: one filled shape on a plain background, with a caption.

Every image is a pure function of (seed, index), so the data set needs no storage and any item can be
re-created exactly. Attribute combinations (shape, colour, position) in `HELD_OUT` never appear in training
and serve as the evaluation prompts.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64
SUPERSAMPLE = 4  # draw at 4x and box-filter down: anti-aliased edges like a real photo's
DATASET_SEED = 20240601

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 30),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "purple": (140, 50, 180),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (250, 250, 250),
    "black": (15, 15, 15),
    "gray": (128, 128, 128),
    "blue": (50, 90, 210),
    "green": (40, 150, 70),
}
# Grid cell -> (row, column); the caption phrase for each.
POSITIONS: dict[str, tuple[int, int]] = {
    "top left": (0, 0), "top": (0, 1), "top right": (0, 2),
    "left": (1, 0), "center": (1, 1), "right": (1, 2),
    "bottom left": (2, 0), "bottom": (2, 1), "bottom right": (2, 2),
}
POSITION_PHRASES = {name: ("in the center" if name == "center" else f"at the {name}") for name in POSITIONS}
CELL_CENTRES = (11.0, 32.0, 53.0)  # pixel centre of grid row/column 0, 1, 2
HALF_SIZE = (9.5, 11.0)  # a shape's half-extent in pixels, drawn uniformly from this range
JITTER = 1.5  # max position jitter in pixels
COLOUR_JITTER = 6  # max per-channel colour jitter
STYLES = ("filled", "outlined")
OUTLINE_WIDTH = 2.5  # pixels, for the "outlined" style (the LoRA's target)

# Captions may leave an attribute out so that short prompts ("a red circle") work too.
DROP_POSITION = 0.1
DROP_BACKGROUND = 0.1
HELD_OUT_FRACTION = 0.1


@dataclass(frozen=True)
class Spec:
    shape: str
    colour: str
    position: str
    background: str
    style: str = "filled"
    cx: float = 32.0
    cy: float = 32.0
    half: float = 10.0
    rgb: tuple[int, int, int] = (0, 0, 0)
    bg_rgb: tuple[int, int, int] = (0, 0, 0)


def all_triples() -> list[tuple[str, str, str]]:
    return list(itertools.product(SHAPES, COLOURS, POSITIONS))


def _held_out() -> frozenset[tuple[str, str, str]]:
    """10% of (shape, colour, position) triples, chosen once by a fixed seed."""
    triples = all_triples()
    rng = np.random.default_rng(DATASET_SEED)
    picked = rng.choice(len(triples), size=round(HELD_OUT_FRACTION * len(triples)), replace=False)
    return frozenset(triples[i] for i in sorted(picked))


HELD_OUT = _held_out()
TRAIN_TRIPLES = tuple(t for t in all_triples() if t not in HELD_OUT)


def backgrounds_for(colour: str) -> list[str]:
    """A shape is never drawn on a background of its own colour name."""
    return [bg for bg in BACKGROUNDS if bg != colour]


def caption(spec: Spec, with_position: bool = True, with_background: bool = True) -> str:
    article = "an" if spec.colour[0] in "aeiou" else "a"
    words = [f"{article} {spec.colour} {spec.shape}"]
    if with_position:
        words.append(POSITION_PHRASES[spec.position])
    if with_background:
        words.append(f"on a {spec.background} background")
    return " ".join(words)


def full_caption(shape: str, colour: str, position: str, background: str) -> str:
    return caption(Spec(shape, colour, position, background))


def _jittered(rgb: tuple[int, int, int], rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1), 0, 255)) for c in rgb)


def make_spec(
    rng: np.random.Generator,
    triple: tuple[str, str, str],
    background: str | None = None,
    style: str = "filled",
) -> Spec:
    shape, colour, position = triple
    background = background or str(rng.choice(backgrounds_for(colour)))
    row, col = POSITIONS[position]
    return Spec(
        shape=shape, colour=colour, position=position, background=background, style=style,
        cx=CELL_CENTRES[col] + rng.uniform(-JITTER, JITTER),
        cy=CELL_CENTRES[row] + rng.uniform(-JITTER, JITTER),
        half=rng.uniform(*HALF_SIZE),
        rgb=_jittered(COLOURS[colour], rng),
        bg_rgb=_jittered(BACKGROUNDS[background], rng),
    )


def sample_spec(seed: int, index: int, style: str = "filled", held_out: bool = False) -> Spec:
    """Item `index` of the data set with `seed`: a training triple (or a held-out one) chosen uniformly."""
    rng = np.random.default_rng([seed, index])
    pool = sorted(HELD_OUT) if held_out else TRAIN_TRIPLES
    return make_spec(rng, pool[rng.integers(len(pool))], style=style)


def sample_caption(seed: int, index: int, spec: Spec) -> str:
    """The training caption of item `index` (sometimes without position or background)."""
    rng = np.random.default_rng([seed, index, 1])
    return caption(spec, with_position=rng.random() >= DROP_POSITION, with_background=rng.random() >= DROP_BACKGROUND)


def outline_points(shape: str, cx: float, cy: float, half: float) -> list[tuple[float, float]]:
    """Polygon vertices (pixels) of the non-circular shapes."""
    polygons = {
        "square": [(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)],
        "triangle": [(0.0, -1.0), (1.0, 0.85), (-1.0, 0.85)],
        "diamond": [(0.0, -1.0), (0.85, 0.0), (0.0, 1.0), (-0.85, 0.0)],
    }
    return [(cx + half * x, cy + half * y) for x, y in polygons[shape]]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, half: float, outline: float) -> None:
    """Draw filled (outline 0) or as a band `outline` pixels wide just inside the shape's edge."""
    s = SUPERSAMPLE
    width = round(outline * s)
    style = {"fill": 255} if width == 0 else {"outline": 255, "width": width}
    if shape == "circle":
        draw.ellipse([(cx - half) * s, (cy - half) * s, (cx + half) * s, (cy + half) * s], **style)
    else:
        draw.polygon([(x * s, y * s) for x, y in outline_points(shape, cx, cy, half)], **style)


def shape_mask(shape: str, cx: float, cy: float, half: float, style: str = "filled", size: int = SIZE) -> np.ndarray:
    """Coverage of the shape at each pixel, float32 [size, size] in [0, 1] (anti-aliased)."""
    big = Image.new("L", (size * SUPERSAMPLE, size * SUPERSAMPLE), 0)
    _draw_shape(ImageDraw.Draw(big), shape, cx, cy, half, OUTLINE_WIDTH if style == "outlined" else 0.0)
    small = big.resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def render(spec: Spec) -> np.ndarray:
    """uint8 [64, 64, 3] image of `spec`."""
    mask = shape_mask(spec.shape, spec.cx, spec.cy, spec.half, spec.style)[..., None]
    image = mask * np.array(spec.rgb, np.float32) + (1.0 - mask) * np.array(spec.bg_rgb, np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def render_batch(seed: int, indices: range | list[int], style: str = "filled") -> tuple[np.ndarray, list[Spec]]:
    specs = [sample_spec(seed, i, style) for i in indices]
    return np.stack([render(s) for s in specs]), specs


def canny(image: np.ndarray, low: int = 100, high: int = 200) -> np.ndarray:
    """OpenCV Canny edges of a uint8 RGB image as a uint8 [H, W, 3] map (0 or 255), ControlNet's hint format."""
    import cv2

    edges = cv2.Canny(image, low, high)
    return np.repeat(edges[..., None], 3, axis=-1)


def evaluation_prompts(held_out: bool = True) -> list[tuple[str, str, str, str]]:
    """(shape, colour, position, background) for every held-out triple and every allowed background."""
    triples = sorted(HELD_OUT) if held_out else sorted(TRAIN_TRIPLES)
    return [(s, c, p, bg) for s, c, p in triples for bg in backgrounds_for(c)]


def sample_styled(seed: int, index: int, outlined_fraction: float) -> Spec:
    """Like `sample_spec`, drawing the style too (outlined with probability `outlined_fraction`)."""
    outlined = np.random.default_rng([seed, index, 2]).random() < outlined_fraction
    return sample_spec(seed, index, "outlined" if outlined else "filled")
