"""One entry point for everything a user may drop or POST: UI JSON, API JSON, diffgraph's saved workflow, or an
image (PNG/JPEG/WebP) carrying any of those or A1111 parameters. The server mounts `convert_payload` as
`POST /convert`; the CLI's `convert` command calls `convert_any`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from graphcore import folders as folder_config
from graphcore.convert.convert import ConversionResult, ui_to_api
from graphcore.convert.report import ImportReport, check_models, describe_api_nodes, to_our_names
from graphcore.convert.ui_format import UiFormatError, is_ui_workflow
from graphcore.folders import Folders
from graphcore.registry import Registry

IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF")
MAX_NESTING = 4  # {"workflow": {"workflow": ...}} wrappers followed at most this deep


class ConvertError(ValueError):
    """The payload is not a workflow in any format we read; the message says what was expected."""


def _looks_like_api_graph(data: Any) -> bool:
    return (
        isinstance(data, Mapping)
        and bool(data)
        and all(isinstance(node, Mapping) and isinstance(node.get("class_type"), str) for node in data.values())
    )


def _from_api(graph: Mapping[str, Any], registry: Registry, folders: Folders, source: str,
              model_map: Mapping[str, str] | None) -> ConversionResult:
    prompt = copy.deepcopy(dict(graph))
    report = ImportReport(source=source)
    describe_api_nodes(prompt, registry, report)
    check_models(prompt, registry, folders, report, model_map)
    return ConversionResult(prompt, report)


def _from_mapping(data: Mapping[str, Any], registry: Registry, folders: Folders,
                  model_map: Mapping[str, str] | None, depth: int = 0) -> ConversionResult:
    if is_ui_workflow(data):
        try:
            return ui_to_api(data, registry, folders=folders, model_map=model_map)
        except UiFormatError as exc:
            raise ConvertError(f"UI-format workflow: {exc}") from None
    if depth < MAX_NESTING:
        for key, source in (("prompt", "api"), ("api", "diffgraph"), ("workflow", None)):
            inner = data.get(key)
            if isinstance(inner, Mapping):
                if source is not None and _looks_like_api_graph(inner):
                    return _from_api(inner, registry, folders, source, model_map)
                if key == "workflow":
                    return _from_mapping(inner, registry, folders, model_map, depth + 1)
    if _looks_like_api_graph(data):
        return _from_api(data, registry, folders, "api", model_map)
    raise ConvertError(
        "not a workflow: expected a ComfyUI UI-format workflow (with a 'nodes' list), an API-format graph "
        "(node id → {class_type, inputs}), diffgraph's saved workflow, or an image carrying one"
    )


def _from_image(data: bytes, registry: Registry, folders: Folders,
                model_map: Mapping[str, str] | None) -> ConversionResult:
    from graphcore.metadata import MetadataError, read_image_workflow

    converted: list[ConversionResult] = []

    def convert_ui(ui: dict[str, Any]) -> dict[str, Any]:
        converted.append(ui_to_api(ui, registry, folders=folders, model_map=model_map))
        return converted[-1].prompt

    try:
        found = read_image_workflow(data, checkpoints=folders.list_models("checkpoints"), ui_to_api=convert_ui)
    except (MetadataError, UiFormatError) as exc:
        raise ConvertError(str(exc)) from None
    if converted and found.api is converted[-1].prompt:
        result = converted[-1]
        result.report.source = f"image:{found.origin}:{result.report.source}"
    else:
        result = _from_api(found.api, registry, folders, f"image:{found.origin}", model_map)
    result.report.warnings.extend(found.warnings)
    return result


def _decode(body: Any) -> Any:
    if isinstance(body, (bytes, bytearray)):
        try:
            return json.loads(bytes(body).decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConvertError(f"neither an image nor JSON: {exc}") from None
    if isinstance(body, str):
        try:
            return json.loads(body)
        except json.JSONDecodeError as exc:
            raise ConvertError(f"not valid JSON: {exc}") from None
    return body


def convert_any(
    body: Mapping[str, Any] | bytes | bytearray | str,
    registry: Registry,
    *,
    folders: Folders | None = None,
    model_map: Mapping[str, str] | None = None,
    our_names: bool = False,
) -> ConversionResult:
    """The API-format graph and import report for any workflow payload; ConvertError when it is none."""
    folders = folders or folder_config.current()
    if isinstance(body, (bytes, bytearray)) and bytes(body).startswith(IMAGE_SIGNATURES):
        result = _from_image(bytes(body), registry, folders, model_map)
    else:
        data = _decode(body)
        if not isinstance(data, Mapping):
            raise ConvertError(f"not a workflow: expected a JSON object, got {type(data).__name__}")
        result = _from_mapping(data, registry, folders, model_map)
    if our_names:
        result.prompt = to_our_names(result.prompt, registry)
    return result


def convert_payload(
    body: Mapping[str, Any] | bytes,
    registry: Registry,
    *,
    folders: Folders | None = None,
    model_map: Mapping[str, str] | None = None,
    our_names: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`POST /convert`: (API-format graph, import report as JSON). Raises ConvertError (→ HTTP 400)."""
    result = convert_any(body, registry, folders=folders, model_map=model_map, our_names=our_names)
    return result.prompt, result.report.to_json()
