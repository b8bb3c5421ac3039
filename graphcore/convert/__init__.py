"""Workflows from elsewhere → API-format graphs with an import report (torch-free; takes a Registry).

    from graphcore.convert import ui_to_api, convert_any, convert_payload
    result = ui_to_api(ui_json, registry)          # ComfyUI UI format (v0.4 / version 1)
    result = convert_any(png_bytes_or_json, registry)  # UI, API, diffgraph, PNG/JPEG/WebP
    result.prompt, result.report.to_json()
"""

from graphcore.convert.api import ConvertError, convert_any, convert_payload
from graphcore.convert.convert import ConversionResult, ui_to_api
from graphcore.convert.report import DroppedNode, ImportReport, MissingModel, RemappedModel
from graphcore.convert.ui_format import UiFormatError, is_ui_workflow

__all__ = [
    "ConversionResult",
    "ConvertError",
    "DroppedNode",
    "ImportReport",
    "MissingModel",
    "RemappedModel",
    "UiFormatError",
    "convert_any",
    "convert_payload",
    "is_ui_workflow",
    "ui_to_api",
]
