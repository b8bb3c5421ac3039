"""Packaging that pyproject.toml cannot say: the code packages and their data folders are found, and the canvas
(web/) and the example workflows (workflows/) keep their top-level folders in the repository while shipping in the
wheel as graphcore/web and graphcore/examples (pyproject.toml maps the folders; graphcore.server.config looks there
first)."""

from pathlib import Path

from setuptools import find_namespace_packages, setup


def data_packages(package: str, folder: str) -> list[str]:
    """The folder and each sub-folder as a package name, so setuptools copies their files (package-data says which)."""
    root = Path(__file__).parent / folder
    subfolders = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_dir() and "__pycache__" not in p.parts)
    return [package, *(".".join((package, *sub.parts)) for sub in subfolders)]


setup(
    packages=[
        *find_namespace_packages(include=["graphcore*", "nodes*"], exclude=["*__pycache__*"]),
        *data_packages("graphcore.web", "web"),
        *data_packages("graphcore.examples", "workflows"),
    ]
)
