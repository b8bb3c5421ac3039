"""Which idle actor runs which pending prompt: model affinity, least-loaded otherwise, bounded overtaking.

The model files a prompt needs are known before it runs: the constants of COMBO inputs that list a model
folder (`ModelChoices`), e.g. LoadCheckpoint's `ckpt_name`. An actor that ran a prompt keeps those models
loaded (its own output cache and model manager), so sending the next prompt with the same checkpoint there
skips a load that costs seconds on a GPU.

No Ray here: the pool feeds this plain data, so the policy is tested on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from graphcore.folders import ModelChoices
from graphcore.inputs import Combo
from graphcore.registry import Registry

ModelKey = tuple[str, str]  # (model folder kind, name)

# How much having a model of this kind loaded is worth when choosing an actor: a checkpoint dominates,
# the small files (LoRAs, embeddings, …) only break ties between actors holding the same checkpoint.
KIND_WEIGHTS: Mapping[str, int] = {"checkpoints": 100, "controlnet": 10, "vae": 10, "upscale_models": 10}
DEFAULT_WEIGHT = 1


def model_needs(prompt: Mapping[str, Any], registry: Registry) -> frozenset[ModelKey]:
    """(kind, name) of every model file the prompt's constants name, found through the node declarations."""
    needs: set[ModelKey] = set()
    for node in prompt.values():
        if not isinstance(node, dict) or not isinstance(node.get("inputs"), dict):
            continue
        resolved = registry.resolve(str(node.get("class_type")))
        if resolved is None:
            continue
        for name, value in node["inputs"].items():
            spec = resolved.cls.inputs.get(resolved.renames.get(name, name))
            if isinstance(value, str) and isinstance(spec, Combo) and isinstance(spec.choices, ModelChoices):
                needs.add((spec.choices.kind, value))
    return frozenset(needs)


def weight(models: Iterable[ModelKey]) -> int:
    return sum(KIND_WEIGHTS.get(kind, DEFAULT_WEIGHT) for kind, _ in models)


@dataclass
class ActorLoad:
    """What the router knows of one actor."""

    key: str
    idle: bool
    models: set[ModelKey] = field(default_factory=set)
    runs: int = 0

    def warmth(self, needs: frozenset[ModelKey]) -> int:
        return weight(needs & self.models)

    def load(self) -> tuple[int, int, str]:
        """Least loaded first: the fewest (weighted) models held, then the fewest prompts run."""
        return (weight(self.models), self.runs, self.key)


@dataclass(frozen=True)
class Pending:
    prompt_id: str
    needs: frozenset[ModelKey] = frozenset()


class Router:
    """Assigns queued prompts (in queue order) to idle actors.

    1. A prompt overtaken `max_skips` times goes first, to the best idle actor, whatever it costs.
    2. A prompt goes to an idle actor that already holds some of its models (the warmest).
    3. A prompt warm on no busy actor goes to the least-loaded idle actor.
    4. Idle actors still free take the remaining prompts in queue order (never idle while work waits).

    A prompt dispatched ahead of others counts one overtaking for each of them, so a cold prompt waits at
    most `max_skips` dispatches behind a stream of warm ones. Without affinity it is plain FIFO onto the
    least-loaded idle actors.
    """

    def __init__(self, affinity: bool = True, max_skips: int = 4) -> None:
        self.affinity = affinity
        self.max_skips = max_skips
        self.skips: dict[str, int] = {}

    def assign(self, window: Sequence[Pending], actors: Sequence[ActorLoad]) -> list[tuple[str, str]]:
        """[(prompt_id, actor key)] for this round; updates the actors' expected models and the skips."""
        idle = [actor for actor in actors if actor.idle]
        chosen: dict[str, ActorLoad] = {}

        def take(prompt: Pending, actor: ActorLoad) -> None:
            chosen[prompt.prompt_id] = actor
            idle.remove(actor)
            actor.idle = False
            actor.models |= prompt.needs  # expected: the next round sees it warm while it loads

        def unassigned() -> list[Pending]:
            return [p for p in window if p.prompt_id not in chosen]

        if not self.affinity:
            for prompt in window[: len(idle)]:
                take(prompt, min(idle, key=ActorLoad.load))
            return self._account(window, chosen)
        for prompt in [p for p in window if self.skips.get(p.prompt_id, 0) >= self.max_skips]:
            if idle:
                take(prompt, self._best(prompt, idle))
        for prompt in unassigned():
            warm = [a for a in idle if a.warmth(prompt.needs) > 0]
            if warm:
                take(prompt, self._best(prompt, warm))
        for prompt in unassigned():
            busy_warm = any(not a.idle and a.warmth(prompt.needs) > 0 for a in actors)
            if idle and not busy_warm:
                take(prompt, min(idle, key=ActorLoad.load))
        for prompt in unassigned():
            if idle:
                take(prompt, min(idle, key=ActorLoad.load))
        return self._account(window, chosen)

    @staticmethod
    def _best(prompt: Pending, candidates: list[ActorLoad]) -> ActorLoad:
        return min(candidates, key=lambda a: (-a.warmth(prompt.needs), *a.load()))

    def _account(self, window: Sequence[Pending], chosen: dict[str, ActorLoad]) -> list[tuple[str, str]]:
        last = max((i for i, p in enumerate(window) if p.prompt_id in chosen), default=-1)
        for position, prompt in enumerate(window):
            if prompt.prompt_id in chosen:
                self.skips.pop(prompt.prompt_id, None)
            elif position < last:
                overtaken = sum(1 for later in window[position + 1:] if later.prompt_id in chosen)
                self.skips[prompt.prompt_id] = self.skips.get(prompt.prompt_id, 0) + overtaken
        return [(p.prompt_id, chosen[p.prompt_id].key) for p in window if p.prompt_id in chosen]

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the counts of prompts no longer pending (run, deleted)."""
        keep = set(keep)
        for prompt_id in [p for p in self.skips if p not in keep]:
            del self.skips[prompt_id]
