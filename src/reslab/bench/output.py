"""What every benchmark prints: its result as JSON on request (``--json``), else its own table."""

from __future__ import annotations

import json


def printed_as_json(result: dict, as_json: bool) -> bool:
    """Print ``result`` as JSON when asked; whether it was (the caller then prints no table)."""
    if as_json:
        print(json.dumps(result, indent=1))
    return as_json
