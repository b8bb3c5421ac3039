"""Input declarations: sockets (links only) and widgets (constants, optionally fed by links).

Each spec renders itself to ComfyUI's /object_info entry and coerces a constant from a workflow,
raising `InputProblem` with ComfyUI's error type when the value does not fit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from graphcore import types


class InputProblem(Exception):
    """A constant that does not fit its input; `error_type` is ComfyUI's error type string."""

    def __init__(self, error_type: str, message: str, details: str = "") -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.details = details


@dataclass(frozen=True)
class InputSpec:
    optional: bool = field(default=False, kw_only=True)
    tooltip: str = field(default="", kw_only=True)

    @property
    def type_name(self) -> str:
        raise NotImplementedError

    @property
    def is_widget(self) -> bool:
        return True

    def options(self) -> dict[str, Any]:
        return {"tooltip": self.tooltip} if self.tooltip else {}

    def object_info(self) -> list[Any]:
        return [self.type_name, self.options()]

    def coerce(self, value: Any) -> Any:
        return value

    def default_value(self) -> Any:
        return getattr(self, "default", None)


@dataclass(frozen=True)
class Socket(InputSpec):
    """An input that only a link can feed (MODEL, LATENT, …)."""

    type: str = types.ANY

    @property
    def type_name(self) -> str:
        return self.type

    @property
    def is_widget(self) -> bool:
        return False

    def coerce(self, value: Any) -> Any:
        raise InputProblem(
            "invalid_input_type",
            f"This input takes a link from a {self.type} output, not a constant",
            f"received {value!r}",
        )


def _check_range(value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise InputProblem("value_smaller_than_min", f"Value {value} smaller than min of {minimum}")
    if maximum is not None and value > maximum:
        raise InputProblem("value_bigger_than_max", f"Value {value} bigger than max of {maximum}")


def _not_a(kind: str, value: Any, why: str = "") -> InputProblem:
    suffix = f": {why}" if why else ""
    return InputProblem(
        "invalid_input_type", f"Failed to convert an input value to a {kind} value", f"{value!r}{suffix}"
    )


@dataclass(frozen=True)
class Int(InputSpec):
    default: int = 0
    min: int | None = None
    max: int | None = None
    step: int = 1
    control_after_generate: bool = False
    display: str = ""

    @property
    def type_name(self) -> str:
        return types.INT

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"default": self.default, "step": self.step}
        if self.min is not None:
            opts["min"] = self.min
        if self.max is not None:
            opts["max"] = self.max
        if self.control_after_generate:
            opts["control_after_generate"] = True
        if self.display:
            opts["display"] = self.display
        return {**opts, **super().options()}

    def coerce(self, value: Any) -> int:
        if isinstance(value, bool):
            raise _not_a("INT", value, "a boolean is not a number")
        if isinstance(value, float):
            if not math.isfinite(value) or value != int(value):
                raise _not_a("INT", value, "not a whole number")
            result = int(value)
        elif isinstance(value, int):
            result = value
        elif isinstance(value, str):
            try:
                result = int(value.strip())
            except ValueError:
                raise _not_a("INT", value) from None
        else:
            raise _not_a("INT", value)
        _check_range(result, self.min, self.max)
        return result


@dataclass(frozen=True)
class Float(InputSpec):
    default: float = 0.0
    min: float | None = None
    max: float | None = None
    step: float = 0.01
    round: float | None = None

    @property
    def type_name(self) -> str:
        return types.FLOAT

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"default": self.default, "step": self.step}
        if self.min is not None:
            opts["min"] = self.min
        if self.max is not None:
            opts["max"] = self.max
        if self.round is not None:
            opts["round"] = self.round
        return {**opts, **super().options()}

    def coerce(self, value: Any) -> float:
        if isinstance(value, bool):
            raise _not_a("FLOAT", value, "a boolean is not a number")
        try:
            result = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise _not_a("FLOAT", value) from None
        if not math.isfinite(result):
            raise _not_a("FLOAT", value, "not a finite number")
        _check_range(result, self.min, self.max)
        return result


@dataclass(frozen=True)
class String(InputSpec):
    default: str = ""
    multiline: bool = False
    max_length: int = 1_000_000

    @property
    def type_name(self) -> str:
        return types.STRING

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"default": self.default}
        if self.multiline:
            opts["multiline"] = True
        return {**opts, **super().options()}

    def coerce(self, value: Any) -> str:
        if isinstance(value, (dict, list)):
            raise _not_a("STRING", value)
        text = value if isinstance(value, str) else str(value)
        if len(text) > self.max_length:
            raise _not_a("STRING", text[:40] + "…", f"longer than {self.max_length} characters")
        return text


_TRUE_WORDS = frozenset({"true", "1", "yes", "on", "enable", "enabled"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off", "disable", "disabled", ""})


@dataclass(frozen=True)
class Boolean(InputSpec):
    default: bool = False
    label_on: str = ""
    label_off: str = ""

    @property
    def type_name(self) -> str:
        return types.BOOLEAN

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"default": self.default}
        if self.label_on:
            opts["label_on"] = self.label_on
        if self.label_off:
            opts["label_off"] = self.label_off
        return {**opts, **super().options()}

    def coerce(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            word = value.strip().lower()
            if word in _TRUE_WORDS:
                return True
            if word in _FALSE_WORDS:
                return False
        raise _not_a("BOOLEAN", value)


ChoiceSource = Sequence[str] | Callable[[], Sequence[str]]


@dataclass(frozen=True)
class Combo(InputSpec):
    """A choice among strings; `choices` may be a callable evaluated when asked (e.g. files in a folder)."""

    choices: ChoiceSource = ()
    default: str | None = None
    allow_upload: str = ""
    # ComfyUI's older files sometimes say "enable"/"disable" where a choice is expected; an alias
    # table maps accepted spellings onto the canonical choice.
    aliases: tuple[tuple[str, str], ...] = ()

    @property
    def type_name(self) -> str:
        return types.COMBO

    def current_choices(self) -> list[str]:
        source = self.choices() if callable(self.choices) else self.choices
        return list(source)

    def object_info(self) -> list[Any]:
        opts = self.options()
        if self.default is not None:
            opts["default"] = self.default
        if self.allow_upload:
            opts[self.allow_upload] = True
        return [self.current_choices(), opts]

    def default_value(self) -> Any:
        if self.default is not None:
            return self.default
        choices = self.current_choices()
        return choices[0] if choices else None

    def coerce(self, value: Any) -> str:
        if not isinstance(value, str):
            raise _not_a("COMBO", value, "a choice must be a string")
        value = dict(self.aliases).get(value, value)
        choices = self.current_choices()
        if value not in choices:
            shown = ", ".join(repr(c) for c in choices[:8]) + (" …" if len(choices) > 8 else "")
            details = f"'{value}' not in [{shown}]" if choices else f"'{value}': there are no choices available"
            hint = getattr(self.choices, "missing_hint", None)
            raise InputProblem("value_not_in_list", "Value not in list", f"{details}; {hint()}" if hint else details)
        return value
