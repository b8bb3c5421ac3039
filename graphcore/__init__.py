"""diffgraph's engine: node declaration, workflow model, validation, execution, server and CLI.

Importing this package never imports torch, diffusers, transformers or the `nodes` package.
"""

__version__ = "0.1.0"
