"""An exact analytic checker: read shape, colour, position, background and style back from pixels.

The data set is drawn by code, so no classifier is needed: the background is the median colour, the shape is
the largest connected region that differs from it, its colour is the nearest named colour, its position is the
nearest grid cell to its bounding-box centre, and its shape and style are those of the drawn template (fitted to
the same bounding box) that overlaps its convex hull best; it is "outlined" when it covers little of its hull.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from training import dataset

FOREGROUND_DISTANCE = 60.0  # RGB distance from the background that counts as "shape"
CORE_FRACTION = 0.25  # read the colour from this fraction of the region's pixels, away from anti-aliased edges
MIN_AREA = 12  # pixels; anything smaller is noise, not a shape
OUTLINED_BELOW = 0.8  # a region covering less than this fraction of its convex hull is an outline

# Extent of each template around (cx, cy) in units of `half`: (left, top, right, bottom).
_EXTENTS = {
    "circle": (-1.0, -1.0, 1.0, 1.0),
    "square": (-0.85, -0.85, 0.85, 0.85),
    "triangle": (-1.0, -1.0, 1.0, 0.85),
    "diamond": (-0.85, -1.0, 0.85, 1.0),
}


@dataclass(frozen=True)
class Analysis:
    shape: str | None
    colour: str | None
    position: str | None
    background: str
    style: str | None
    iou: float  # overlap of the region with the best template (1 = a perfectly drawn shape)
    area: int  # pixels of the region

    def matches(self, shape: str, colour: str, position: str, background: str) -> dict[str, bool]:
        return {
            "shape": self.shape == shape, "colour": self.colour == colour,
            "position": self.position == position, "background": self.background == background,
        }


def _nearest(rgb: np.ndarray, table: dict[str, tuple[int, int, int]]) -> str:
    names = list(table)
    distances = np.linalg.norm(np.array([table[n] for n in names], np.float32) - rgb[None], axis=1)
    return names[int(np.argmin(distances))]


def _largest_region(mask: np.ndarray) -> np.ndarray | None:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return None
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[best, cv2.CC_STAT_AREA] < MIN_AREA:
        return None
    return labels == best


def _nearest_cell(value: float) -> int:
    return int(np.argmin([abs(value - c) for c in dataset.CELL_CENTRES]))


def _fit_template(shape: str, box: tuple[int, int, int, int]) -> np.ndarray:
    """The template of `shape` whose extent fills the pixel bounding box (x0, y0, x1, y1 inclusive)."""
    x0, y0, x1, y1 = box
    left, top, right, bottom = _EXTENTS[shape]
    width, height = x1 + 1 - x0, y1 + 1 - y0
    half = max(width / (right - left), height / (bottom - top))
    cx = x0 + width / 2 - half * (left + right) / 2
    cy = y0 + height / 2 - half * (top + bottom) / 2
    return dataset.shape_mask(shape, cx, cy, half, size=dataset.SIZE) > 0.5


def _convex_hull(region: np.ndarray) -> np.ndarray:
    """Every shape is convex: its hull is the filled shape, also when only its outline was drawn."""
    ys, xs = np.nonzero(region)
    hull = cv2.convexHull(np.stack([xs, ys], axis=1).astype(np.int32))
    filled = np.zeros(region.shape, np.uint8)
    cv2.fillConvexPoly(filled, hull, 1)
    return filled.astype(bool) | region


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def analyse(image: np.ndarray) -> Analysis:
    """Analyse one uint8 RGB image [64, 64, 3] (a rendered or a generated one)."""
    if image.shape != (dataset.SIZE, dataset.SIZE, 3):
        raise ValueError(f"checker expects a {dataset.SIZE}x{dataset.SIZE} RGB image, got shape {image.shape}")
    pixels = image.astype(np.float32)
    background_rgb = np.median(pixels.reshape(-1, 3), axis=0)
    background = _nearest(background_rgb, dataset.BACKGROUNDS)
    distance = np.linalg.norm(pixels - background_rgb, axis=-1)
    region = _largest_region(distance > FOREGROUND_DISTANCE)
    if region is None:
        return Analysis(None, None, None, background, None, 0.0, 0)
    # The colour is read where the shape covers its pixels fully: those farthest from the background.
    region_distance = distance[region]
    core = region_distance >= np.quantile(region_distance, 1.0 - CORE_FRACTION)
    colour = _nearest(np.median(pixels[region][core], axis=0), dataset.COLOURS)
    ys, xs = np.nonzero(region)
    box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    row, col = _nearest_cell((box[1] + box[3]) / 2), _nearest_cell((box[0] + box[2]) / 2)
    position = next(name for name, cell in dataset.POSITIONS.items() if cell == (row, col))
    hull = _convex_hull(region)
    scores = {shape: _iou(hull, _fit_template(shape, box)) for shape in dataset.SHAPES}
    shape = max(scores, key=scores.__getitem__)
    style = "outlined" if region.sum() < OUTLINED_BELOW * hull.sum() else "filled"
    return Analysis(shape, colour, position, background, style, scores[shape], int(region.sum()))
