"""The explanation methods, named once for every layer that offers them (the CLI, the server's query and
``explain.py``), without importing torch or grad-cam."""

from __future__ import annotations

METHODS = ("gradcam", "gradcam++", "scorecam")
DEFAULT_METHOD = "gradcam"
METHOD_PATTERN = "^(" + "|".join(m.replace("+", r"\+") for m in METHODS) + ")$"  # the query's regex
METHOD_HELP = "scorecam runs the network once per channel of the layer: slower, no gradients"
