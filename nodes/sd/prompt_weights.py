"""A1111/ComfyUI prompt emphasis: `(word)` ×1.1, `((word))` ×1.21, `(word:1.3)`, `[word]` ÷1.1,
`\\(` `\\)` `\\[` `\\]` `\\\\` escapes, and `BREAK` to start a new 75-token chunk. Pure Python."""

from __future__ import annotations

import re
from dataclasses import dataclass

EMPHASIS = 1.1
BREAK = "BREAK"

_TOKEN = re.compile(
    r"""\\[()\[\]\\]        # escaped bracket or backslash
      | \(                  # open emphasis
      | \[                  # open de-emphasis
      | :\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*\)  # explicit weight closing a ( group
      | \)                  # close emphasis
      | \]                  # close de-emphasis
      | [^\\()\[\]:]+       # plain text
      | :                   # a colon that is just text
      | \\                  # a lone backslash
    """,
    re.X,
)


@dataclass(frozen=True)
class Segment:
    text: str
    weight: float
    breaks_before: bool = False


def parse(prompt: str) -> list[Segment]:
    """Text segments with their weights, in order; unclosed groups apply to the rest of the prompt."""
    pieces: list[list[str]] = []  # one text per piece
    factors: list[list[float]] = []  # the weight factors of the groups enclosing each piece
    open_groups: list[tuple[str, int]] = []  # (kind, index of the group's first piece)

    def close(kind: str, factor: float) -> None:
        for pos in range(len(open_groups) - 1, -1, -1):
            if open_groups[pos][0] == kind:
                _, start = open_groups.pop(pos)
                for piece in range(start, len(pieces)):
                    factors[piece].append(factor)
                return
        pieces.append([")" if kind == "(" else "]"])  # unmatched closer: literal text
        factors.append([])

    for match in _TOKEN.finditer(prompt):
        token = match.group(0)
        if token.startswith("\\") and len(token) == 2:
            pieces.append([token[1]])
            factors.append([])
        elif token in ("(", "["):
            open_groups.append((token, len(pieces)))
        elif match.group(1) is not None:
            try:
                weight = float(match.group(1))
            except ValueError:
                weight = EMPHASIS
            close("(", weight)
        elif token == ")":
            close("(", EMPHASIS)
        elif token == "]":
            close("[", 1 / EMPHASIS)
        else:
            pieces.append([token])
            factors.append([])
    for kind, start in reversed(open_groups):  # unclosed groups still count, as in A1111
        for piece in range(start, len(pieces)):
            factors[piece].append(EMPHASIS if kind == "(" else 1 / EMPHASIS)

    segments: list[Segment] = []
    pending_break = False
    for (text,), piece_factors in zip(pieces, factors, strict=True):
        weight = 1.0
        for f in piece_factors:
            weight *= f
        for i, part in enumerate(re.split(r"\bBREAK\b", text)):
            if i > 0:
                pending_break = True
            if not part:
                continue
            if segments and not pending_break and abs(segments[-1].weight - weight) < 1e-9:
                segments[-1] = Segment(segments[-1].text + part, weight, segments[-1].breaks_before)
            else:
                segments.append(Segment(part, weight, pending_break))
            pending_break = False
    return segments
