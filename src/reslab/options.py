"""Options declared once: a dataclass field carries its default, type, choices and help, and the command
line, YAML files and the Python API all read that one declaration.

    @dataclass
    class PruneOptions:
        amount: float = option(help="fraction of weights to zero", required=True)
        method: str = option("l1-unstructured", choices=("l1-unstructured", "structured"))

``add_flags(parser, PruneOptions)`` makes ``--amount`` and ``--method``; ``from_args(args, PruneOptions)``
builds the dataclass from what was given (unset flags leave the field's default, or a ``--config`` YAML
value, showing through); ``from_dict`` reads YAML mappings with the same coercions and checks. Field
types drive parsing: ``bool`` is ``--x/--no-x``, ``list[T]`` takes ``A,B,...`` (or several words where the
field says ``nargs``), ``X | None`` accepts ``none``, and ``AutoBool``/``AutoFloat`` accept ``auto``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

# a switch that may be left to a measurement: true, false or "auto" (``--amp``, ``--no-amp``, ``--amp auto``)
AutoBool = bool | Literal["auto"]
# a number that may be left to a measurement (``--lr 0.05``, ``--lr auto``) or unset (a default that follows the run)
AutoFloat = float | Literal["auto"]

DEVICE_HELP = "auto (a GPU where there is one) | cpu | cuda | cuda:N"
_UNSET = dataclasses.MISSING

T = TypeVar("T")


def option(default: Any = _UNSET, *, help: str, choices: tuple | None = None, flag: str | None = None,
           positional: bool = False, nargs: str | None = None, metavar: str | None = None,
           required: bool = False, factory: Any = None, const: Any = None) -> Any:
    """A dataclass field with what its flag needs. ``flag``: the flag's own name where it is not the field's
    (``--class`` for ``class_name``); ``positional``: an argument without a flag; ``nargs``: ``+``/``*`` for
    several words, ``append`` for a repeatable flag; ``const``: the value of the flag given alone
    (``--explain`` for ``--explain gradcam``); ``required``: the flag must be given (the field then
    has no default in Python either)."""
    required = required or positional and default is _UNSET and factory is None
    metadata = {"help": help, "choices": choices, "flag": flag, "positional": positional, "nargs": nargs,
                "metavar": metavar, "const": const, "required": required}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def device_option(default: str = "auto", help: str = DEVICE_HELP) -> Any:
    """The ``--device`` of every command, declared here once."""
    return option(default, help=help)


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def narrowed(obj: Any, declaration: type[T]) -> T:
    """The fields of ``declaration`` alone, taken from ``obj`` (a ``TrainConfig``'s augmentation, say)."""
    return declaration(**{f.name: getattr(obj, f.name) for f in dataclasses.fields(declaration)})


def check_choices(obj: Any, what: str = "option") -> None:
    """Refuse a field whose value is not among its declared choices (call from ``__post_init__``)."""
    for f in dataclasses.fields(obj):
        allowed = f.metadata.get("choices")
        value = getattr(obj, f.name)
        values = value if isinstance(value, list) else [value]
        if allowed is not None and any(v not in allowed for v in values):
            raise ValueError(f"{what} {f.name!r}: {value!r} is not one of {tuple(allowed)}")


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(inner type, optional?) for ``X | None``, ``list[X]`` and plain types."""
    args = typing.get_args(tp)
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return inner[0], type(None) in args
    return tp, False


def coerce(name: str, value: Any, tp: Any, what: str = "option") -> Any:
    """``value`` (text from a flag, or YAML's own types) as type ``tp``; a clear error naming the field."""
    if tp == AutoBool:
        if value is None or str(value).lower() in ("auto", "none", "null"):  # None: a run folder from before auto
            return "auto"
        try:
            return coerce(name, value, bool, what)
        except ValueError:
            raise ValueError(f"{what} {name!r}: expected true/false/auto, got {value!r}") from None
    if tp == AutoFloat | None:
        if str(value).lower() == "auto":
            return "auto"
        try:
            return coerce(name, value, float | None, what)
        except ValueError:
            raise ValueError(f"{what} {name!r}: expected a number or auto, got {value!r}") from None
    base, optional = _base_type(tp)
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null", "")):
        if not optional:
            raise ValueError(f"{what} {name!r} cannot be empty")
        return None
    if typing.get_origin(base) is list:
        (item,) = typing.get_args(base)
        items = value if isinstance(value, list | tuple) else [v for v in str(value).split(",") if v]
        return [coerce(name, v, item, what) for v in items]
    if base is bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{what} {name!r}: expected true/false, got {value!r}")
    try:
        if base is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return base(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} {name!r}: expected {base.__name__}, got {value!r}") from None


def _shown_default(f: dataclasses.Field) -> str:
    if f.default_factory is not _UNSET:
        value = f.default_factory()
        return f" [{','.join(map(str, value))}]" if value else ""
    return f" [{f.default}]" if f.default not in (None, _UNSET, False) else ""


def add_flags(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One argument per field of ``cls`` (but ``skip``). Flags default to None, so that an unset flag lets
    the field's default or a YAML value show through; the help shows the field's default."""
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tp = field_types(cls)[f.name]
        base, _ = _base_type(tp)
        meta = f.metadata
        text = meta["help"] + ("" if meta["required"] else _shown_default(f))
        nargs, choices = meta["nargs"], meta["choices"]
        if meta["positional"]:
            parser.add_argument(f.name, nargs=nargs, metavar=meta["metavar"], help=text,
                                **({} if meta["required"] else {"default": None}))
            continue
        flag = meta["flag"] or "--" + f.name.replace("_", "-")
        common = {"dest": f.name, "default": None, "help": text}
        if tp == AutoBool:
            parser.add_argument(flag, nargs="?", const=True, metavar="auto", **common)
            parser.add_argument("--no-" + flag[2:], dest=f.name, action="store_const", const=False,
                                help=argparse.SUPPRESS)
        elif base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        elif meta["const"] is not None:
            parser.add_argument(flag, nargs="?", const=meta["const"], choices=[c for c in choices or () if c],
                                **common)
        elif nargs == "append":
            parser.add_argument(flag, action="append", metavar=meta["metavar"], **common)
        else:
            listed = typing.get_origin(base) is list
            metavar = meta["metavar"] or ("A,B,..." if listed and nargs is None else None if choices else
                                          f.name.upper())
            # a choice of None (``--stem none``) is read by ``coerce``; argparse would want the word 'None'
            plain_choices = choices if choices is not None and not listed and None not in choices else None
            parser.add_argument(flag, nargs=nargs, metavar=metavar, required=meta["required"],
                                choices=[str(c) for c in plain_choices] if plain_choices else None, **common)


def given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` that ``args`` sets (not None)."""
    return {name: getattr(args, name) for name in field_types(cls) if getattr(args, name, None) is not None}


def from_dict(cls: type, data: dict[str, Any], what: str = "option") -> Any:
    """``cls`` from a mapping of field: value (YAML or flags), each coerced to its field's type."""
    types_ = field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; known: {', '.join(types_)}")
    return cls(**{k: coerce(k, v, types_[k], what) for k, v in data.items()})


def from_args(args: argparse.Namespace, cls: type, what: str = "option", yaml_file: str | None = None,
              **overrides: Any) -> Any:
    """``cls`` from parsed flags: the fields of the ``yaml_file`` (``--config``) where there is one, then the
    flags given, then ``overrides`` (values the command computed)."""
    data = load_yaml(yaml_file) if yaml_file else {}
    return from_dict(cls, {**data, **given(args, cls), **overrides}, what)


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ValueError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of field: value, got {type(data).__name__}")
    return data


MODEL_HELP = ("a model file (.safetensors, .onnx, .xml, .torchscript, .pt2), a Hugging Face ResNet folder, a "
              "torchvision name with its ImageNet weights (resnet18 ... resnet152, or resnet50:IMAGENET1K_V2) or "
              "hf:ORG/NAME (e.g. hf:microsoft/resnet-50)")
PRECISION_HELP = ("fp32 | bf16 (where native; checked against fp32 on real images) | int8 (a quantised model) | "
                  "auto: the fastest precision here that passes that check")


def weights_option() -> Any:
    return option(None, metavar="FILE", help="with a torchvision name: its checkpoint (.pth) from a local file "
                  "instead of the download, e.g. resnet50 --weights resnet50-11ad3fa6.pth")


@dataclasses.dataclass(kw_only=True)
class ModelSource:
    """The model a command works on: a file or a name, with a local checkpoint for a name."""

    model: str = option(positional=True, help=MODEL_HELP)
    weights: str | None = weights_option()


@dataclasses.dataclass(kw_only=True)
class Printed:
    """A command whose result can be printed as JSON instead of as text: ``--json``, declared here once."""

    json: bool = option(False, help="print the result as JSON")
