"""The ``reslab`` command: each subcommand's options come from its typed declaration (``options.option``
fields); a command turns them into a call of the library and prints what comes back. Nothing more.

The library modules are imported when their command runs, not when the command line is built: ``reslab
--help`` and ``reslab serve model.onnx`` start without torch.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from .bench.options import BENCHES
from .config import ModelsOptions, T, TrainConfig, add_config_flags, config_from_args
from .curate.options import LabelIssuesOptions
from .data.options import CheckDataOptions, PackOptions
from .evaluate.options import EvalCommand, ExplainCommand
from .export.options import ExportCommand
from .features.options import EmbedCommand, ProbeCommand
from .infer.options import PredictCommand
from .names import is_model_name, is_plain_file, output_stem
from .optimize.options import PruneCommand, QuantizeCommand
from .options import Printed, add_flags, from_args
from .pretrain.config import NOT_APPLICABLE, PretrainConfig
from .results import plain
from .scale.options import PredictBatchCommand
from .serve.settings import ServeCommand, ServeConfig, split_model_arguments
from .train.options import LrFindOptions

# the packages an extra brings, for the message when one is missing
EXTRAS = {"torch": "torch", "torchvision": "torch", "matplotlib": "torch", "tensorboard": "torch",
          "fastapi": "serve", "uvicorn": "serve", "prometheus_client": "serve", "onnxruntime": "serve",
          "onnx": "serve", "openvino": "deploy", "torch_pruning": "deploy", "transformers": "hf", "datasets": "hf",
          "huggingface_hub": "hf", "pytorch_grad_cam": "explain", "cleanlab": "labels", "lightly": "ssl",
          "pyarrow": "ssl", "sklearn": "labels", "ray": "ray"}


def model_path(model: str, weights: str | None = None) -> Path:
    """The model file for ``model``: downloaded and converted once when it is a name."""
    if is_plain_file(model, weights):  # opened as it is, without importing torch
        return Path(model)
    from .models.pretrained import resolve_model  # torch: only for a name

    return resolve_model(model, weights)


def output_beside(model: str, suffix: str) -> Path | None:
    """A named model's outputs go into the current folder (``resnet50.onnx``); a file's beside it (None)."""
    return Path(output_stem(model) + suffix) if is_model_name(model) else None


def show(result: Any, as_json: bool, text: Callable[[Any], str] | None = None) -> None:
    """``result`` as JSON, or as text: ``text(result)``, or a typed report's own ``text()``."""
    print(json.dumps(plain(result), indent=1) if as_json else text(result) if text else result.text())


def cmd_train(args: argparse.Namespace) -> None:
    from .train.distributed import close_distributed, init_distributed  # torch
    from .train.trainer import Trainer  # torch

    cfg = run_config(args, TrainConfig)
    runtime = init_distributed(cfg.device)  # one process, or one of torchrun's
    try:
        Trainer(cfg, runtime).fit()
    finally:
        close_distributed()


def cmd_predict_batch(args: argparse.Namespace) -> None:
    from .scale.job import predict_batch  # ray and pyarrow

    show(predict_batch(from_args(args, PredictBatchCommand)), args.json)


def cmd_pretrain(args: argparse.Namespace) -> None:
    from .pretrain.trainer import Pretrainer  # torch and lightly
    from .train.distributed import close_distributed, init_distributed  # torch

    cfg = run_config(args, PretrainConfig)
    runtime = init_distributed(cfg.device)
    try:
        Pretrainer(cfg, runtime).fit()
    finally:
        close_distributed()


def run_config(args: argparse.Namespace, config: type[T]) -> T:
    """A run's config from its flags; ``--resume`` of a named run reads the run's own saved config first."""
    if args.resume and not args.config:
        # continue a run with its own saved config; flags given now still override it
        name, out_dir = args.name, args.out_dir or "runs"
        if not name:
            raise ValueError("--resume needs --name (the run folder under --out-dir) or --config")
        saved = Path(out_dir) / name / "config.yaml"
        if not saved.is_file():
            raise ValueError(f"{saved}: no run to resume")
        args.config = str(saved)
    return config_from_args(args, config)


def cmd_lr_find(args: argparse.Namespace) -> None:
    from .evaluate.plots import plot_lr_find  # torch and matplotlib
    from .train.lr_find import range_test  # torch
    from .train.trainer import Trainer  # torch

    cfg, opts = config_from_args(args), from_args(args, LrFindOptions)
    trainer = Trainer(replace(cfg, lr=None) if cfg.lr == "auto" else cfg)  # data, network, precision; no run folder
    test = range_test(trainer, steps=opts.steps, start_lr=opts.start_lr, end_lr=opts.end_lr)
    report = {**test.as_dict(), "picture": str(plot_lr_find(test, Path(opts.out)))}
    show(report, args.json, lambda r: f"{test.line()}\npicture: {r['picture']}\ntrain with it: reslab train --data "
         f"{cfg.data} --model {cfg.model} --lr {test.suggestion:.3g} (or --lr auto, which runs this test first)")


def cmd_eval(args: argparse.Namespace) -> None:
    from .evaluate.report import run_eval  # torch

    o = from_args(args, EvalCommand)
    out = Path(o.out) if o.out else (output_beside(o.model, "") or Path(o.model)).parent / f"eval-{o.split}"
    report = run_eval(model_path(o.model, o.weights), o.data, out, split=o.split, tta=o.tta, batch_size=o.batch_size,
                      device=o.device, workers=o.workers, precision=o.precision,
                      split_file=Path(o.split_file) if o.split_file else None,
                      feature_maps=Path(o.feature_maps) if o.feature_maps else None, explain=o.explain)
    show(report, args.json)


def cmd_predict(args: argparse.Namespace) -> None:
    from .infer.predictor import (  # Predictor: numpy and the chosen runtime, loaded by this command only
        Predictor,
        format_predictions,
    )

    o = from_args(args, PredictCommand)
    predictor = Predictor.from_file(model_path(o.model, o.weights), backend=o.backend, device=o.device,
                                    threads=o.threads, precision=o.precision, timing="later")
    results = predictor.predict_files(o.inputs, topk=o.topk, batch_size=o.batch_size, segments=o.segments)
    header = f"# {o.model}: {predictor.backend_name} {predictor.precision} ({predictor.choice})"
    print(header, file=sys.stderr if args.json else sys.stdout)
    show(results, args.json, format_predictions)
    sys.stdout.flush()
    if predictor.selection is not None:
        predictor.selection.choose_in_background()  # a first run's timing, once the answer is out
    if results and all("error" in r for r in results):
        sys.exit(1)


def cmd_export(args: argparse.Namespace) -> None:
    from .export.run import default_output, export_model  # torch

    o = from_args(args, ExportCommand)
    named = output_beside(o.model, ".safetensors")  # a name's exports go into the current folder
    out = Path(o.out) if o.out else default_output(named, o.format) if named else None
    report = export_model(model_path(o.model, o.weights), o.format, out, opset=o.opset,
                          verify_images=[Path(p) for p in o.verify_images] if o.verify_images else None,
                          rtol=o.rtol, triton_name=o.name, max_batch_size=o.max_batch_size, precision=o.precision)
    show(report, args.json)


def cmd_quantize(args: argparse.Namespace) -> None:
    from .optimize.quantize import quantize_model  # torch, onnx

    o = from_args(args, QuantizeCommand)
    out = Path(o.out) if o.out else output_beside(o.model, "-int8.onnx")
    show(quantize_model(model_path(o.model, o.weights), o, out), args.json)


def cmd_prune(args: argparse.Namespace) -> None:
    from .optimize.prune import prune_model  # torch

    o = from_args(args, PruneCommand)
    show(prune_model(Path(o.model), o, Path(o.out) if o.out else None), args.json)


def cmd_serve(args: argparse.Namespace) -> None:
    from .serve.auth import collect_api_keys  # the serve extra, loaded by this command only
    from .serve.run import serve  # fastapi and uvicorn: the serve extra

    o = from_args(args, ServeCommand)
    pairs = split_model_arguments(o.models, o.name)
    if o.weights is not None and len(pairs) > 1:
        raise ValueError("--weights goes with a single model name; serve that model on its own")
    files = [str(model_path(source, o.weights)) for _, source in pairs]
    serve(from_args(args, ServeConfig, "serve option", models=files, names=[label for label, _ in pairs],
                    api_keys=collect_api_keys(o.api_key, o.api_key_file)))


def cmd_models(args: argparse.Namespace) -> None:
    from .models import describe_models, format_models  # torch

    show(describe_models(from_args(args, ModelsOptions).image_size), args.json, format_models)


def cmd_env(args: argparse.Namespace) -> None:
    from .env import environment_report, format_report  # asks torch and every runtime

    show(environment_report(), args.json, format_report)


def cmd_explain(args: argparse.Namespace) -> None:
    from .evaluate.explain import Explainer, explain_files, format_explained  # torch, grad-cam
    from .hardware import resolve_device

    o = from_args(args, ExplainCommand)
    explainer = Explainer.from_file(model_path(o.model, o.weights), o.method, o.layer, resolve_device(o.device))
    rows = explain_files(explainer, o.inputs, Path(o.out), o.class_name)
    show(rows, args.json, format_explained)
    if not any("overlay" in row for row in rows):
        raise ValueError("nothing could be explained: no input was a readable image (or video, for a video model)")


def cmd_embed(args: argparse.Namespace) -> None:
    from .features.embed import embed_files  # torch, pyarrow
    from .hardware import resolve_device

    o = from_args(args, EmbedCommand)
    show(embed_files(model_path(o.model, o.weights), o.inputs, Path(o.out), resolve_device(o.device), o.batch_size),
         args.json)


def cmd_probe(args: argparse.Namespace) -> None:
    from .features.probe import run_probe  # torch, lightly, scikit-learn
    from .hardware import resolve_device

    o = from_args(args, ProbeCommand)
    show(run_probe(model_path(o.model, o.weights), o.data, resolve_device(o.device), o.batch_size, o.workers, o.k,
                   o.temperature, o.cache_dir), args.json)


def cmd_find_label_issues(args: argparse.Namespace) -> None:
    from .curate.label_issues import find_label_issues, format_label_issues  # torch, cleanlab
    from .formats import read_info

    o = from_args(args, LabelIssuesOptions)
    if o.from_model and args.data is None:  # the data the model was trained on
        args.data = read_info(Path(o.from_model)).training.get("data")
        if args.data is None:
            raise ValueError(f"{o.from_model}: the model file does not say what it was trained on; pass --data")
    if args.name is None:
        args.name = f"label-issues-{Path(args.data or 'cifar10').stem}"
    report = find_label_issues(config_from_args(args), folds=o.folds,
                               from_model=Path(o.from_model) if o.from_model else None, split=o.split, top=o.top,
                               write_relabel=o.write_relabel_csv,
                               features=model_path(o.features) if o.features else None)
    show(report, args.json, lambda r: format_label_issues(r, o.top))


def cmd_check_data(args: argparse.Namespace) -> None:
    from .data.check import check_folder, format_report  # Pillow over every file

    show(check_folder(Path(from_args(args, CheckDataOptions).path)), args.json, format_report)


def cmd_pack(args: argparse.Namespace) -> None:
    from .data.pack import pack_folder  # Pillow, numpy

    o = from_args(args, PackOptions)
    report = pack_folder(o.data, o.out, short_side=o.short_side, quality=o.quality, seed=o.seed,
                         split_file=Path(o.split_file) if o.split_file else None, threads=o.threads)
    show(report.as_dict(), args.json, lambda _: report.summary())


def cmd_bench(args: argparse.Namespace) -> None:
    _, options, target = BENCHES[args.bench]
    module, function = target.split(":")
    # each benchmark brings torch and its own libraries: imported when it runs (by name, from the table)
    run = getattr(importlib.import_module(f".bench.{module}", __package__), function)
    run(from_args(args, options, "bench option"))


# name -> (help, the option declarations whose flags it takes, the function that runs it)
COMMANDS: dict[str, tuple[str, tuple[type, ...], Callable[[argparse.Namespace], None]]] = {
    "train": ("train a model (flags override --config YAML)", (TrainConfig,), cmd_train),
    "pretrain": ("self-supervised pretraining of a backbone on images without labels (SimCLR, MoCo v2, BYOL); "
                 "fine-tune it with train --init", (PretrainConfig,), cmd_pretrain),
    "lr-find": ("learning-rate range test: the training loss as the rate grows exponentially, plotted, with a "
                "suggested --lr", (TrainConfig, LrFindOptions, Printed), cmd_lr_find),
    "eval": ("evaluate a model file on a dataset split", (EvalCommand, Printed), cmd_eval),
    "explain": ("Grad-CAM heat-maps: where in each image the model's answer comes from", (ExplainCommand, Printed),
                cmd_explain),
    "find-label-issues": ("images whose label is likely wrong: out-of-sample probabilities by k-fold cross-training "
                          "(or from a model), ranked by cleanlab; changes nothing",
                          (TrainConfig, LabelIssuesOptions, Printed), cmd_find_label_issues),
    "predict": ("classify images or folders of images", (PredictCommand, Printed), cmd_predict),
    "predict-batch": ("classify a whole archive on Ray (a local instance, or a cluster): an actor pool of "
                      "predictors, Parquet parts, resumable", (PredictBatchCommand, Printed), cmd_predict_batch),
    "embed": ("one feature vector per image (what the classifier reads), into a Parquet file",
              (EmbedCommand, Printed), cmd_embed),
    "probe": ("how well a model's frozen features separate a dataset's classes: kNN and linear-probe top-1",
              (ProbeCommand, Printed), cmd_probe),
    "export": ("export to ONNX, TorchScript, torch.export, OpenVINO or a Triton repository", (ExportCommand, Printed),
               cmd_export),
    "quantize": ("static INT8 quantisation (ONNX Runtime), measured on the val split", (QuantizeCommand, Printed),
                 cmd_quantize),
    "prune": ("L1 unstructured or structured channel pruning, measured before/after", (PruneCommand, Printed),
              cmd_prune),
    "serve": ("REST API, v2 inference protocol and a web page for one model or several", (ServeCommand, ServeConfig),
              cmd_serve),
    "models": ("list the architectures with parameters and MACs", (ModelsOptions, Printed), cmd_models),
    "env": ("this machine: CPU, GPUs, native precisions, versions, usable runtimes", (Printed,), cmd_env),
    "check-data": ("report classes, counts, sizes, duplicates and unreadable files", (CheckDataOptions, Printed),
                   cmd_check_data),
    "pack": ("a folder dataset as one file of pre-resized JPEGs (train with --data OUT.npz)", (PackOptions, Printed),
             cmd_pack),
}
# what the command computes or takes from elsewhere rather than from a flag of its own
NOT_FLAGS = {ServeConfig: ("models", "names", "api_keys"), PretrainConfig: NOT_APPLICABLE}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reslab", description="Image classification with residual networks.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (text, declarations, run) in COMMANDS.items():
        command = sub.add_parser(name, help=text)
        for declaration in declarations:
            if issubclass(declaration, TrainConfig):
                add_config_flags(command, declaration, NOT_FLAGS.get(declaration, ()))
            else:
                add_flags(command, declaration, skip=NOT_FLAGS.get(declaration, ()))
        command.set_defaults(func=run)
    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench", required=True)
    for name, (text, options, _) in BENCHES.items():
        command = bench.add_parser(name, help=text)
        add_flags(command, options)
        command.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"reslab {args.command}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except ModuleNotFoundError as e:
        if e.name not in EXTRAS:
            raise
        print(f"reslab {args.command}: error: this needs {e.name}, which is not installed: pip install "
              f"'reslab[{EXTRAS[e.name]}]'", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
