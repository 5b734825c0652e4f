"""What a command returns: a dataclass with typed fields, which prints itself as JSON.

``reslab quantize|prune|export|eval --json`` print exactly this; the Python API returns the object itself,
so ``report.output`` and ``report.int8.score`` are attributes an editor completes, not dictionary keys.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any


def plain(value: Any) -> Any:
    """``value`` as JSON's types: dataclasses as objects, paths as strings, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


@dataclasses.dataclass
class Result:
    """The base of every command's report: ``str(report)`` and ``--json`` give the same JSON."""

    def to_dict(self) -> dict[str, Any]:
        return plain(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def __str__(self) -> str:
        return self.to_json()
