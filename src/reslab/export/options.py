"""What ``reslab export`` takes: flags, YAML and the Python API read these."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import ModelSource, check_choices, option
from ..precision import CHOICES
from .formats import EXPORT_FORMATS


@dataclass(kw_only=True)
class ExportOptions:
    format: str = option(required=True, choices=tuple(EXPORT_FORMATS), help="the runtime to export to")
    opset: int = option(18, help="ONNX opset (17 or newer)")
    verify_images: list[str] | None = option(None, nargs="+", metavar="IMAGE", help="real images to compare the "
                                             "export with the original on (default: the shipped photos)")
    rtol: float | None = option(None, help="largest logit difference allowed, relative to the largest logit "
                                "(default: the precision's, 1e-3 for fp32)")
    precision: str = option("fp32", choices=CHOICES, help="bf16: an OpenVINO IR that runs in bf16, checked with the "
                            "bf16 tolerance (where bf16 is native); auto: bf16 for openvino where native, else fp32; "
                            "int8: see `reslab quantize`")
    name: str | None = option(None, help="triton: the model's name in the repository (default: the architecture)")
    max_batch_size: int = option(32, help="triton: max_batch_size of config.pbtxt")

    def __post_init__(self) -> None:
        check_choices(self, "export option")


@dataclass(kw_only=True)
class ExportCommand(ModelSource, ExportOptions):
    out: str | None = option(None, help="output file (a folder for triton and huggingface); default: beside MODEL, "
                             "or in the current folder for a named model")
