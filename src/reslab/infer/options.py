"""What ``reslab predict`` takes: flags, YAML and the Python API read these."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import PRECISION_HELP, ModelSource, check_choices, device_option, option
from ..precision import CHOICES
from .backends import BACKENDS


@dataclass(kw_only=True)
class PredictCommand(ModelSource):
    inputs: list[str] = option(positional=True, nargs="+", help="image files or folders (videos for a video model)")
    topk: int = option(5, help="classes shown per image")
    batch_size: int = option(32, help="images per inference call")
    backend: str = option("auto", choices=("auto", *BACKENDS), help="auto: the fastest installed runtime that can "
                          "read MODEL")
    threads: int | None = option(None, help="inference threads (default: the runtime's own choice)")
    device: str = device_option()
    precision: str = option("auto", choices=CHOICES, help=PRECISION_HELP)
    segments: float | None = option(None, help="video models: also the top-k of each window of this many seconds "
                                    "(a timeline)")

    def __post_init__(self) -> None:
        check_choices(self, "predict option")
