"""The `diffgraph` command: run, validate, nodes, serve, convert."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from graphcore import folders as folder_config
from graphcore.events import ExecutionEvents
from graphcore.executor import Executor
from graphcore.registry import Registry, discover
from graphcore.workflow import Workflow, WorkflowFormatError


class CliError(Exception):
    """A problem to print as one readable message (exit code 1)."""


def load_workflow_file(path: str) -> dict[str, Any]:
    """An API-format graph from a JSON file (or a wrapper holding one under "prompt")."""
    return load_workflow_document(path)[0]


def load_workflow_document(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(API graph, extra_data to run it with): a saved diffgraph workflow embeds itself in the PNGs it makes,
    a `{prompt, extra_data}` body keeps its extra data, a plain API graph gets none."""
    file = Path(path)
    if not file.is_file():
        raise CliError(f"{path}: no such file")
    if file.suffix.lower() in (".png", ".webp", ".jpg", ".jpeg"):
        return _load_workflow_file(file, path), {}
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CliError(f"{path}: not valid JSON ({exc})") from None
    graph = unwrap_api_graph(data, path)
    extra: dict[str, Any] = {}
    if isinstance(data, dict) and isinstance(data.get("extra_data"), dict):
        extra = dict(data["extra_data"])
    elif isinstance(data, dict) and data.get("format") == "diffgraph-workflow":
        extra = {"extra_pnginfo": {"workflow": data}}
    return graph, extra


def _load_workflow_file(file: Path, path: str) -> dict[str, Any]:
    if not file.is_file():
        raise CliError(f"{path}: no such file")
    from graphcore.convert import ConvertError, convert_any

    try:
        return convert_any(file.read_bytes(), _registry()).prompt
    except ConvertError as exc:
        raise CliError(f"{path}: {exc}") from None


def unwrap_api_graph(data: Any, source: str = "workflow") -> dict[str, Any]:
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict):
        return data["prompt"]
    if isinstance(data, dict) and isinstance(data.get("api"), dict):  # diffgraph's saved workflow
        return data["api"]
    if isinstance(data, dict) and isinstance(data.get("nodes"), list):
        try:
            from graphcore.convert import ui_to_api
        except ImportError:
            raise CliError(f"{source}: UI-format workflows are not supported yet") from None
        return ui_to_api(data, _registry()).prompt
    if not isinstance(data, dict):
        raise CliError(f"{source}: expected a JSON object of node id → node")
    return data


def parse_assignment(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or "." not in key:
        raise CliError(f"--set {text!r}: expected NODE_ID.INPUT=VALUE")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


_REGISTRY: Registry | None = None


def _registry() -> Registry:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = discover()
    return _REGISTRY


def _configure_folders(args: argparse.Namespace) -> folder_config.Folders:
    try:
        found = folder_config.folders_from_options(
            getattr(args, "models_dir", None),
            getattr(args, "output_dir", None),
            getattr(args, "input_dir", None),
            getattr(args, "extra_model_paths", None) or (),
        )
    except FileNotFoundError as exc:
        raise CliError(str(exc)) from None
    return folder_config.configure(found.create())


class TerminalProgress(ExecutionEvents):
    """tqdm bars: one over the nodes of the run, one over the steps of the current node."""

    def __init__(self, plan_size: int, titles: dict[str, str], stream=sys.stderr) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.stream = stream
        self.titles = titles
        self.nodes = tqdm(total=plan_size, desc="nodes", unit="node", file=stream, leave=False)
        self.steps = None
        self.error_message: str | None = None

    def nodes_cached(self, prompt_id, node_ids):
        self.nodes.total = max(0, (self.nodes.total or 0) - len(node_ids))
        self.nodes.refresh()

    def node_start(self, prompt_id, node_id):
        self.nodes.set_description(f"#{node_id} {self.titles.get(node_id, '')}")

    def progress(self, prompt_id, node_id, value, maximum, preview=None):
        if self.steps is None or self.steps.total != maximum:
            self._close_steps()
            self.steps = self._tqdm(total=maximum, desc=f"  #{node_id}", unit="step", file=self.stream, leave=False)
        self.steps.n = value
        self.steps.refresh()

    def node_done(self, prompt_id, node_id, ui):
        self._close_steps()
        self.nodes.update(1)

    def _close_steps(self):
        if self.steps is not None:
            self.steps.close()
            self.steps = None

    def close(self):
        self._close_steps()
        self.nodes.close()


def saved_files(outputs: dict[str, dict[str, Any]], folders: folder_config.Folders) -> list[Path]:
    roots = {"output": folders.output_dir, "temp": folders.temp_dir, "input": folders.input_dir}
    files = []
    for ui in outputs.values():
        for image in ui.get("images", []) if isinstance(ui, dict) else []:
            root = roots.get(image.get("type", "output"), folders.output_dir)
            files.append(root / image.get("subfolder", "") / image["filename"])
    return files


def cmd_run(args: argparse.Namespace) -> int:
    folders = _configure_folders(args)
    graph, extra = load_workflow_document(args.workflow)
    overrides = dict(parse_assignment(item) for item in args.set or [])
    try:
        workflow = Workflow.from_api(graph)
        if overrides:
            workflow = workflow.with_overrides(overrides)
    except (WorkflowFormatError, KeyError) as exc:
        raise CliError(f"{args.workflow}: {exc}") from None
    executor = Executor(_registry(), folders=folders)
    report = executor.validate(workflow)
    if not report.ok:
        print(f"{args.workflow}: the workflow is not valid:", file=sys.stderr)
        for line in report.sentences():
            print(f"  - {line}", file=sys.stderr)
        return 1
    assert report.plan is not None
    titles = {node_id: node.class_type for node_id, node in report.plan.nodes.items()}
    progress = TerminalProgress(len(report.plan.order), titles) if not args.quiet else None
    started = time.perf_counter()
    try:
        result = executor.execute(report.plan, prompt_id="cli", events=progress, extra_data=extra)
    finally:
        if progress is not None:
            progress.close()
    if result.status == "error" and result.error is not None:
        err = result.error
        print(f"node {err.node_id} ({err.node_type}) failed: {err.exception_message}", file=sys.stderr)
        if args.traceback:
            print("".join(err.traceback), file=sys.stderr)
        return 1
    if result.status == "interrupted":
        print("interrupted", file=sys.stderr)
        return 130
    for path in saved_files(result.outputs, folders):
        print(path)
    if not args.quiet:
        print(f"done in {time.perf_counter() - started:.2f} s", file=sys.stderr)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    _configure_folders(args)
    graph = load_workflow_file(args.workflow)
    try:
        report = Executor(_registry()).validate(Workflow.from_api(graph))
    except WorkflowFormatError as exc:
        raise CliError(f"{args.workflow}: {exc}") from None
    if args.json:
        body = {"ok": True, "outputs": report.outputs} if report.ok else report.to_comfy()
        print(json.dumps(body, indent=2))
    elif report.ok:
        print(f"{args.workflow}: valid ({len(report.plan.order)} nodes to run, outputs {report.outputs})")
    else:
        print(f"{args.workflow}: the workflow is not valid:")
        for line in report.sentences():
            print(f"  - {line}")
    return 0 if report.ok else 1


def cmd_nodes(args: argparse.Namespace) -> int:
    _configure_folders(args)
    info = _registry().object_info()
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    by_category: dict[str, list[str]] = {}
    for name, entry in info.items():
        by_category.setdefault(entry["category"], []).append(name)
    for category in sorted(by_category):
        print(category)
        for name in sorted(by_category[category]):
            aliases = info[name].get("aliases")
            suffix = f"  (also {', '.join(aliases)})" if aliases else ""
            print(f"  {name}{suffix}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from graphcore.server.app import serve
    except ImportError:
        raise CliError("the server is not available in this build") from None
    return serve(args)


def cmd_convert(args: argparse.Namespace) -> int:
    from graphcore.convert import ConvertError, convert_any

    folders = _configure_folders(args)
    file = Path(args.input)
    if not file.is_file():
        raise CliError(f"{args.input}: no such file")
    model_map = {}
    for item in args.map or []:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise CliError(f"--map {item!r}: expected OLD_NAME=NEW_NAME")
        model_map[old] = new
    try:
        result = convert_any(file.read_bytes(), _registry(), folders=folders, model_map=model_map,
                             our_names=args.our_names)
    except ConvertError as exc:
        raise CliError(f"{args.input}: {exc}") from None
    if args.report:
        for line in result.report.lines():
            print(line, file=sys.stderr)
    text = json.dumps(result.prompt, indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0


def _add_folder_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models-dir", help="models folder (default: $DIFFGRAPH_MODELS_DIR or the data folder)")
    parser.add_argument("--output-dir", help="where images are saved")
    parser.add_argument("--input-dir", help="where input images are read from")
    parser.add_argument(
        "--extra-model-paths", action="append", metavar="PATH",
        help="a ComfyUI extra_model_paths.yaml or an AUTOMATIC1111 install folder (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffgraph", description="Node-graph diffusion workflows.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="validate and run a workflow, print the saved files")
    run.add_argument("workflow", help="API-format workflow JSON (or a PNG carrying one)")
    run.add_argument("--set", action="append", metavar="NODE.INPUT=VALUE", help="override a constant input")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--traceback", action="store_true", help="print the full traceback on a node failure")
    _add_folder_options(run)
    run.set_defaults(func=cmd_run)

    val = sub.add_parser("validate", help="check a workflow without running it")
    val.add_argument("workflow")
    val.add_argument("--json", action="store_true", help="ComfyUI's 400 body (or {ok: true})")
    _add_folder_options(val)
    val.set_defaults(func=cmd_validate)

    nodes = sub.add_parser("nodes", help="list node types (--json: the /object_info document)")
    nodes.add_argument("--json", action="store_true")
    _add_folder_options(nodes)
    nodes.set_defaults(func=cmd_nodes)

    serve = sub.add_parser("serve", help="start the web canvas and the HTTP/WebSocket API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8188)
    serve.add_argument("--auth-token", help="required when listening beyond loopback (or $DIFFGRAPH_AUTH_TOKEN)")
    serve.add_argument("--data-dir", help="queue, history and saved workflows (default: the data folder)")
    serve.add_argument("--workers", default="local", help="'local' or 'ray[://ADDRESS]'")
    serve.add_argument(
        "--allow-origin", action="append", metavar="ORIGIN",
        help="another origin allowed to send writes, e.g. https://studio.example behind a TLS proxy (repeatable)",
    )
    serve.add_argument("--history-size", type=int, default=10_000, help="finished prompts kept in the history")
    serve.add_argument("--max-upload-mb", type=float, default=50, help="largest accepted upload")
    _add_folder_options(serve)
    serve.set_defaults(func=cmd_serve)

    conv = sub.add_parser(
        "convert", help="print the API-format graph of a workflow: ComfyUI UI or API JSON, diffgraph's, or an image"
    )
    conv.add_argument("input", help="a .json workflow or a PNG/JPEG/WebP carrying one (or A1111 parameters)")
    conv.add_argument("--report", action="store_true", help="print the import report to stderr")
    conv.add_argument("--our-names", action="store_true", help="write our node type and input names, not ComfyUI's")
    conv.add_argument("--map", action="append", metavar="OLD=NEW", help="use model NEW where the file names OLD")
    conv.add_argument("-o", "--output", help="write the graph to this file instead of stdout")
    _add_folder_options(conv)
    conv.set_defaults(func=cmd_convert)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CliError as exc:
        print(f"diffgraph: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
