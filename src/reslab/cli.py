"""The ``reslab`` command. Each subcommand parses its arguments and calls the library; nothing more."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .config import add_config_flags, config_from_args
from .evaluate.methods import DEFAULT_METHOD, METHOD_HELP, METHODS
from .export.formats import EXPORT_FORMATS
from .infer.backends import BACKENDS
from .precision import CHOICES

# the packages an extra brings, for the message when one is missing
EXTRAS = {"torch": "torch", "torchvision": "torch", "matplotlib": "torch", "tensorboard": "torch",
          "fastapi": "serve", "uvicorn": "serve", "prometheus_client": "serve", "onnxruntime": "serve",
          "onnx": "serve", "openvino": "deploy", "torch_pruning": "deploy", "transformers": "hf", "datasets": "hf",
          "huggingface_hub": "hf", "pytorch_grad_cam": "explain", "cleanlab": "labels",
          "sklearn": "labels"}
MODEL_HELP = ("a model file (.safetensors, .onnx, .xml, .torchscript, .pt2), a Hugging Face ResNet folder, a "
              "torchvision name with its ImageNet weights (resnet18 ... resnet152, or resnet50:IMAGENET1K_V2) or "
              "hf:ORG/NAME (e.g. hf:microsoft/resnet-50)")


def model_path(args: argparse.Namespace) -> Path:
    """The model file for ``args.model``: downloaded and converted once when it is a name."""
    from .names import is_plain_file

    if is_plain_file(args.model, args.weights):  # opened as it is, without importing torch
        return Path(args.model)
    from .models.pretrained import resolve_model

    return resolve_model(args.model, args.weights)


def output_beside(args: argparse.Namespace, suffix: str) -> Path | None:
    """A named model's outputs go into the current folder (``resnet50.onnx``); a file's beside it (None)."""
    from .names import is_model_name, output_stem

    return Path(output_stem(args.model) + suffix) if is_model_name(args.model) else None


def cmd_train(args: argparse.Namespace) -> None:
    from .train.distributed import close_distributed, init_distributed
    from .train.trainer import Trainer

    if args.resume and not args.config:
        # continue a run with its own saved config; flags given now still override it
        name, out_dir = args.name, args.out_dir or "runs"
        if not name:
            raise ValueError("--resume needs --name (the run folder under --out-dir) or --config")
        saved = Path(out_dir) / name / "config.yaml"
        if not saved.is_file():
            raise ValueError(f"{saved}: no run to resume")
        args.config = str(saved)
    cfg = config_from_args(args)
    runtime = init_distributed(cfg.device)  # one process, or one of torchrun's
    try:
        Trainer(cfg, runtime).fit()
    finally:
        close_distributed()


def cmd_lr_find(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from .bench.output import printed_as_json
    from .evaluate.plots import plot_lr_find
    from .train.lr_find import range_test
    from .train.trainer import Trainer

    cfg = config_from_args(args)
    if cfg.lr == "auto":
        cfg = replace(cfg, lr=None)
    trainer = Trainer(cfg)  # builds data, network and precision; writes no run folder
    test = range_test(trainer, steps=args.steps, start_lr=args.start_lr, end_lr=args.end_lr)
    picture = plot_lr_find(test, Path(args.out))
    report = {"suggestion": test.suggestion, "minimum_lr": test.minimum_lr, "steepest_lr": test.steepest_lr,
              "steps": len(test.lrs), "lrs": test.lrs, "losses": test.losses, "picture": str(picture)}
    if printed_as_json(report, args.json):
        return
    print(test.line())
    print(f"picture: {picture}")
    print(f"train with it: reslab train --data {cfg.data} --model {cfg.model} --lr {test.suggestion:.3g} "
          f"(or --lr auto, which runs this test first)")


def cmd_eval(args: argparse.Namespace) -> None:
    from .evaluate.report import run_eval

    out = Path(args.out) if args.out else (output_beside(args, "") or Path(args.model)).parent / f"eval-{args.split}"
    report = run_eval(model_path(args), args.data, out, split=args.split, tta=args.tta, batch_size=args.batch_size,
                      device=args.device, workers=args.workers, precision=args.precision,
                      split_file=Path(args.split_file) if args.split_file else None,
                      feature_maps=Path(args.feature_maps) if args.feature_maps else None, explain=args.explain)
    if args.json:
        print(json.dumps(report, indent=1))
        return
    if report["task"] == "multilabel":
        print_multilabel_report(report, args.split)
        return
    print(f"{args.split}: {report['count']} images  top-1 {report['top1']:.4f}  top-5 {report['top5']:.4f}  "
          f"loss {report['loss']:.4f}{'  (flip TTA)' if args.tta else ''}  [{report['device']}, {report['precision']}]")
    print(f"balanced accuracy {report['balanced_accuracy']:.4f}  macro-F1 {report['macro_f1']:.4f}  "
          f"(each class counted equally)")
    print(f"precision: {report['precision_choice']}")
    if "fp32" in report:
        fp32 = report["fp32"]
        print(f"fp32 on the same images: top-1 {fp32['top1']:.4f}, so {report['precision']} changes top-1 by "
              f"{100 * (report['top1'] - fp32['top1']):+.2f} points; predictions agree on {fp32['agreement']:.1%}")
    print(f"{'class':<16}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}")
    for row in report["per_class"]:
        print(f"{row['class'][:15]:<16}{row['precision']:>10.3f}{row['recall']:>10.3f}{row['f1']:>10.3f}"
              f"{row['support']:>9}")
    for name, path in report["files"].items():
        print(f"{name}: {path}")


def print_multilabel_report(report: dict, split: str) -> None:
    print(f"{split}: {report['count']} images  mAP {report['map']:.4f} (micro {report['map_micro']:.4f})  "
          f"loss {report['loss']:.4f}{'  (flip TTA)' if report['tta'] else ''}  "
          f"[{report['device']}, {report['precision']}]")
    print(f"at the thresholds ({report['thresholds']}): sample-F1 {report['f1_samples']:.4f}  exact match "
          f"{report['exact_match']:.4f}  micro P/R/F1 {report['precision_micro']:.3f}/{report['recall_micro']:.3f}/"
          f"{report['f1_micro']:.3f}  macro-F1 {report['f1_macro']:.3f}")
    print(f"precision: {report['precision_choice']}")
    if "fp32" in report:
        fp32 = report["fp32"]
        print(f"fp32 on the same images: mAP {fp32['map']:.4f}; decisions agree on {fp32['agreement']:.1%}")
    print(f"{'label':<16}{'AP':>8}{'threshold':>10}{'precision':>10}{'recall':>10}{'f1':>8}{'support':>9}")
    for row in report["per_class"]:
        ap = f"{row['ap']:>8.3f}" if row["ap"] is not None else f"{'-':>8}"
        print(f"{row['class'][:15]:<16}{ap}{row['threshold']:>10.3f}{row['precision']:>10.3f}{row['recall']:>10.3f}"
              f"{row['f1']:>8.3f}{row['support']:>9}")
    for name, path in report["files"].items():
        print(f"{name}: {path}")


def cmd_predict(args: argparse.Namespace) -> None:
    from .infer.predictor import Predictor

    predictor = Predictor.from_file(model_path(args), backend=args.backend, device=args.device, threads=args.threads,
                                    precision=args.precision, timing="later")
    results = predictor.predict_files(args.inputs, topk=args.topk, batch_size=args.batch_size)
    header = f"# {args.model}: {predictor.backend_name} {predictor.precision} ({predictor.choice})"
    print(header, file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        for entry in results:
            if "error" in entry:
                print(f"{entry['file']}: ERROR {entry['error']}")
                continue
            top = "  ".join(f"{p['label']} {p['probability']:.3f}" for p in entry["predictions"])
            labels = f"  => labels: {', '.join(entry['labels']) or '(none)'}" if "labels" in entry else ""
            print(f"{entry['file']}: {top}{labels}")
    sys.stdout.flush()
    if predictor.selection is not None:
        predictor.selection.choose_in_background()  # a first run's timing, once the answer is out
    if results and all("error" in r for r in results):
        sys.exit(1)


def cmd_export(args: argparse.Namespace) -> None:
    from .export.run import default_output, export_model

    named = output_beside(args, ".safetensors")  # a name's exports go into the current folder
    out = Path(args.out) if args.out else default_output(named, args.format) if named else None
    report = export_model(model_path(args), args.format, out, opset=args.opset,
                          verify_images=[Path(p) for p in args.verify_images] if args.verify_images else None,
                          rtol=args.rtol, triton_name=args.name, max_batch_size=args.max_batch_size,
                          precision=args.precision)
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"{report['format']}: {report['output']} ({report['bytes'] / 1e6:.2f} MB)")
    for note in report["notes"]:
        print(f"  {note}")
    print(f"  {report['precision']}, checked with {report['checked_with']} on {report['images']} real images: max "
          f"|logit difference| {report['max_abs_diff']:.2e} (tolerance {report['tolerance']:.1e}), top-1 agreement "
          f"{report['top1_agreement']:.1%}")


def cmd_quantize(args: argparse.Namespace) -> None:
    from .optimize.quantize import QuantizeOptions, quantize_model

    opts = QuantizeOptions(calib_data=args.calib_data, calib_images=args.calib_images, method=args.method,
                           val_data=args.val_data, val_split=args.val_split, val_images=args.val_images,
                           max_drop=args.max_drop, force=args.force, reduce_range=args.reduce_range)
    r = quantize_model(model_path(args), opts, Path(args.out) if args.out else output_beside(args, "-int8.onnx"))
    if args.json:
        print(json.dumps(r, indent=1))
        return
    print(f"INT8 ({r['method']} calibration on {r['calibration_images']} training images, per-channel "
          f"{r['per_channel']}, reduce_range {r['reduce_range']}): {r['output']}")
    metric, shown = r["metric"], {"top1": "top-1", "map": "mAP"}[r["metric"]]
    print(f"{'':<8}{shown:>8}{'MB':>8}{'images/s':>10}   ({r['val_images']} {r['val_split']} images, batch 32)")
    for kind in ("fp32", "int8"):
        print(f"{kind:<8}{r[f'{metric}_{kind}']:>8.4f}{r[f'bytes_{kind}'] / 1e6:>8.2f}"
              f"{r[f'images_per_s_{kind}']:>10.1f}")
    print(f"{shown} drop {r['drop_points']:.2f} points; predictions agree on {r['agreement']:.1%}; "
          f"{r['images_per_s_int8'] / r['images_per_s_fp32']:.2f}x faster, "
          f"{r['bytes_fp32'] / r['bytes_int8']:.1f}x smaller")


def cmd_prune(args: argparse.Namespace) -> None:
    from .optimize.prune import PruneOptions, prune_model

    opts = PruneOptions(amount=args.amount, method=args.method, data=args.data,
                        finetune_epochs=args.finetune_epochs, lr=args.lr, batch_size=args.batch_size,
                        val_images=args.val_images, device=args.device)
    r = prune_model(Path(args.model), opts, Path(args.out) if args.out else None)
    if args.json:
        print(json.dumps(r, indent=1))
        return
    stages = [("before", r["before"]), ("pruned", r["pruned"])]
    if r["finetune_epochs"]:
        stages.append((f"+{r['finetune_epochs']} ep", r["after"]))
    print(f"{r['method']} pruning, amount {r['amount']}: {r['output']}")
    print(f"{'':<9}{'top-1':>8}{'params':>12}{'MMACs':>10}{'zeros':>8}{'zlib MB':>9}{'CPU img/s':>11}")
    for name, row in stages:
        top1 = f"{row['top1']:.4f}" if row.get("top1") is not None else "-"
        print(f"{name:<9}{top1:>8}{row['params']:>12,}{row['macs'] / 1e6:>10.1f}{row['zero_weights']:>8.1%}"
              f"{row['compressed_bytes'] / 1e6:>9.2f}{row['cpu_images_per_s']:>11.1f}")
    if r["layer_sparsity"]:
        print("sparsity per layer: " + ", ".join(f"{k} {v:.0%}" for k, v in r["layer_sparsity"].items()))
        print("note: unstructured zeros make the file compress better; dense kernels still do every "
              "multiplication, so it does not run faster. Use --method structured for speed.")


def cmd_serve(args: argparse.Namespace) -> None:
    from .serve.auth import collect_api_keys
    from .serve.run import serve
    from .serve.settings import ServeConfig, split_model_arguments

    pairs = split_model_arguments(args.models, args.name)
    if args.weights is not None and len(pairs) > 1:
        raise ValueError("--weights goes with a single model name; serve that model on its own")
    files = [str(model_path(argparse.Namespace(model=source, weights=args.weights))) for _, source in pairs]
    serve(ServeConfig(
        models=files, names=[label for label, _ in pairs], host=args.host, port=args.port, backend=args.backend,
        workers=args.workers,
        max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_upload_mb=args.max_upload_mb,
        max_pixels=args.max_pixels, cache_size=args.cache_size, max_queue=args.max_queue, timeout_s=args.timeout_s,
        threads=args.threads, decode_threads=args.decode_threads, device=args.device,
        precision=args.precision, api_keys=collect_api_keys(args.api_key, args.api_key_file),
        ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile,
    ))


def cmd_models(args: argparse.Namespace) -> None:
    from .models import describe_models

    rows = describe_models(args.image_size)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'model':<11}{'family':<10}{'classes':>8}{'size':>6}{'params':>14}{'GMACs':>9}")
    for r in rows:
        print(f"{r['model']:<11}{r['family']:<10}{r['classes']:>8}{r['image_size']:>6}{r['params']:>14,}"
              f"{r['macs'] / 1e9:>9.3f}")


def cmd_env(args: argparse.Namespace) -> None:
    from .env import environment_report, format_report

    report = environment_report()
    print(json.dumps(report, indent=1) if args.json else format_report(report))


def cmd_explain(args: argparse.Namespace) -> None:
    from .evaluate.explain import Explainer, explain_files
    from .hardware import resolve_device

    explainer = Explainer.from_file(model_path(args), args.method, args.layer, resolve_device(args.device))
    rows = explain_files(explainer, args.inputs, Path(args.out), args.class_name)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    for row in rows:
        if "error" in row:
            print(f"{row['file']}: skipped: {row['error']}")
        else:
            print(f"{row['file']}: {row['class']} ({row['probability']:.3f}) -> {row['overlay']}")
    if not any("overlay" in row for row in rows):
        raise ValueError("no image could be explained")


def cmd_find_label_issues(args: argparse.Namespace) -> None:
    from .curate.label_issues import find_label_issues

    if args.from_model and args.data is None:  # the data the model was trained on
        from .formats import read_info

        args.data = read_info(Path(args.from_model)).training.get("data")
        if args.data is None:
            raise ValueError(f"{args.from_model}: the model file does not say what it was trained on; pass --data")
    if args.name is None:
        args.name = f"label-issues-{Path(args.data or 'cifar10').stem}"
    report = find_label_issues(config_from_args(args), folds=args.folds,
                               from_model=Path(args.from_model) if args.from_model else None, split=args.split,
                               top=args.top, write_relabel=args.write_relabel_csv)
    from .bench.output import printed_as_json

    if printed_as_json(report, args.json):
        return
    print(f"{report['flagged']} of {report['readable']} {report['split']} images flagged as likely label errors "
          f"({report['method']}; out-of-sample top-1 {report['out_of_sample_top1']:.3f})")
    print(f"{'rank':>5}  {'quality':>8}  {'given':<14}{'suggested':<14}image")
    for row in report["issues"][: args.top]:
        print(f"{row['rank']:>5}  {row['quality']:>8.4f}  {row['given_label'][:13]:<14}"
              f"{row['suggested_label'][:13]:<14}{row['image']}")
    for name, path in report["files"].items():
        print(f"{name}: {path}")
    print("nothing in the dataset was changed")


def cmd_check_data(args: argparse.Namespace) -> None:
    from .data.check import check_folder, format_report

    report = check_folder(Path(args.path))
    print(json.dumps(report, indent=1) if args.json else format_report(report))


def cmd_pack(args: argparse.Namespace) -> None:
    from .data.pack import pack_folder

    report = pack_folder(args.data, args.out, short_side=args.short_side, quality=args.quality, seed=args.seed,
                         split_file=Path(args.split_file) if args.split_file else None, threads=args.threads)
    print(json.dumps(report.as_dict(), indent=1) if args.json else report.summary())


def cmd_bench_data(args: argparse.Namespace) -> None:
    from .bench.data import run_data_bench

    run_data_bench(args)


def cmd_bench_train(args: argparse.Namespace) -> None:
    from .bench.train import run_train_bench

    run_train_bench(args)


def cmd_bench_infer(args: argparse.Namespace) -> None:
    from .bench.infer import run_infer_bench

    run_infer_bench(args)


def cmd_bench_time_to_accuracy(args: argparse.Namespace) -> None:
    from .bench.time_to_accuracy import run_time_to_accuracy

    run_time_to_accuracy(args)


def cmd_bench_imbalance(args: argparse.Namespace) -> None:
    from .bench.imbalance import run_imbalance_bench

    run_imbalance_bench(args)


def cmd_bench_multilabel(args: argparse.Namespace) -> None:
    from .bench.multilabel import run_multilabel_bench

    run_multilabel_bench(args)


def cmd_bench_label_issues(args: argparse.Namespace) -> None:
    from .bench.label_issues import run_label_issues_bench

    run_label_issues_bench(args)


def cmd_bench_vs_timm(args: argparse.Namespace) -> None:
    from .bench.vs_timm import run_vs_timm_bench

    run_vs_timm_bench(args)


def cmd_bench_serve(args: argparse.Namespace) -> None:
    from .bench.serve import run_serve_bench

    run_serve_bench(args)


def add_device_flags(parser: argparse.ArgumentParser, precision_default: str = "auto",
                     precisions: tuple[str, ...] = CHOICES, precision_help: str | None = None) -> None:
    parser.add_argument("--device", default="auto", help="auto (a GPU where there is one) | cpu | cuda | cuda:N")
    parser.add_argument("--precision", default=precision_default, choices=precisions, help=precision_help or (
        "fp32 | bf16 (where native; checked against fp32 on real images) | int8 (a quantised model) | auto: the "
        "fastest precision here that passes that check"))


def add_model_argument(parser: argparse.ArgumentParser, several: bool = False) -> None:
    if several:
        parser.add_argument("models", nargs="+", metavar="MODEL", help=MODEL_HELP + ". Several are served side by "
                            "side, each under its name (its file's stem, or NAME=MODEL); the first is the default")
    else:
        parser.add_argument("model", help=MODEL_HELP)
    parser.add_argument("--weights", metavar="FILE", help="with a torchvision name: its checkpoint (.pth) from a "
                        "local file instead of the download, e.g. resnet50 --weights resnet50-11ad3fa6.pth")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reslab", description="Image classification with residual networks.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model (flags override --config YAML)")
    add_config_flags(train)
    train.set_defaults(func=cmd_train)

    lf = sub.add_parser("lr-find", help="learning-rate range test: the training loss as the rate grows exponentially, "
                        "plotted, with a suggested --lr")
    add_config_flags(lf)
    lf.add_argument("--steps", type=int, default=100, help="training steps of the test (over several epochs if the "
                    "data is small)")
    lf.add_argument("--start-lr", type=float, default=1e-7)
    lf.add_argument("--end-lr", type=float, default=10.0)
    lf.add_argument("--out", default="lr_find.png", help="the picture of loss against learning rate")
    lf.add_argument("--json", action="store_true")
    lf.set_defaults(func=cmd_lr_find)

    ev = sub.add_parser("eval", help="evaluate a model file on a dataset split")
    add_model_argument(ev)
    ev.add_argument("--data", help="cifar10, cifar100 or an image folder (default: the data it was trained on)")
    ev.add_argument("--split", default="val", choices=["val", "test", "train"])
    ev.add_argument("--split-file", help="split.json of a folder split 70/20/10 (default: the one beside MODEL)")
    ev.add_argument("--tta", action="store_true", help="average with the horizontally flipped image")
    ev.add_argument("--out", help="report folder (default: beside the model, eval-<split>/)")
    ev.add_argument("--feature-maps", metavar="IMAGE", help="also draw conv1's feature maps for IMAGE")
    ev.add_argument("--explain", nargs="?", const=DEFAULT_METHOD, choices=METHODS,
                    help="also draw the worst images with Grad-CAM heat-maps of their predicted class "
                    "(worst_explained.png; a .safetensors model file)")
    ev.add_argument("--batch-size", type=int, default=256)
    ev.add_argument("--workers", type=int, help="data-loading processes (default: from the cores)")
    add_device_flags(ev, precision_default="fp32", precisions=("auto", "fp32", "bf16"),
                     precision_help="bf16: also evaluates in fp32 and reports the change; auto: bf16 where native "
                     "and checked on real images")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=cmd_eval)

    xp = sub.add_parser("explain", help="Grad-CAM heat-maps: where in each image the model's answer comes from")
    add_model_argument(xp)
    xp.add_argument("inputs", nargs="+", help="image files or folders")
    xp.add_argument("--class", dest="class_name", help="explain this class (default: each image's top class)")
    xp.add_argument("--method", default=DEFAULT_METHOD, choices=METHODS, help=METHOD_HELP)
    xp.add_argument("--layer", help="the module to take the heat-map from, e.g. layer4.1 (default: the last block "
                    "of the last stage)")
    xp.add_argument("--out", default="explanations", help="folder of the overlay PNGs")
    xp.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    xp.add_argument("--json", action="store_true")
    xp.set_defaults(func=cmd_explain)

    li = sub.add_parser("find-label-issues", help="images whose label is likely wrong: out-of-sample probabilities "
                        "by k-fold cross-training (or from a model), ranked by cleanlab; changes nothing")
    add_config_flags(li)
    li.add_argument("--folds", type=int, default=5, help="cross-training folds (each trains --epochs on the others)")
    li.add_argument("--from-model", metavar="MODEL", help="use this model file's predictions on --split instead of "
                    "cross-training (a split it did not train on)")
    li.add_argument("--split", default="val", choices=["val", "test", "train"], help="--from-model: the split")
    li.add_argument("--top", type=int, default=32, help="suspects shown in the grid picture and printed")
    li.add_argument("--write-relabel-csv", action="store_true", help="also write relabel.csv: the suspects with "
                    "an action column (review -> keep, relabel or remove) for you to fill in")
    li.add_argument("--json", action="store_true")
    li.set_defaults(func=cmd_find_label_issues)

    pr = sub.add_parser("predict", help="classify images or folders of images")
    add_model_argument(pr)
    pr.add_argument("inputs", nargs="+", help="image files or folders")
    pr.add_argument("--topk", type=int, default=5)
    pr.add_argument("--batch-size", type=int, default=32)
    pr.add_argument("--backend", default="auto", choices=["auto", *BACKENDS],
                    help="auto: the fastest installed runtime that can read MODEL")
    pr.add_argument("--threads", type=int, help="inference threads (default: the runtime's own choice)")
    add_device_flags(pr)
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=cmd_predict)

    ex = sub.add_parser("export", help="export to ONNX, TorchScript, torch.export, OpenVINO or a Triton repository")
    add_model_argument(ex)
    ex.add_argument("--format", required=True, choices=list(EXPORT_FORMATS))
    ex.add_argument("--out", help="output file (a folder for triton and huggingface); default: beside MODEL, or in "
                    "the current folder for a named model")
    ex.add_argument("--opset", type=int, default=18, help="ONNX opset (17 or newer)")
    ex.add_argument("--verify-images", nargs="+", metavar="IMAGE",
                    help="real images to compare the export with the original on (default: the shipped photos)")
    ex.add_argument("--rtol", type=float, help="largest logit difference allowed, relative to the largest logit "
                    "(default: the precision's, 1e-3 for fp32)")
    ex.add_argument("--precision", default="fp32", choices=CHOICES,
                    help="bf16: an OpenVINO IR that runs in bf16, checked with the bf16 tolerance (where bf16 is "
                    "native); auto: bf16 for openvino where native, else fp32; int8: see `reslab quantize`")
    ex.add_argument("--name", help="triton: the model's name in the repository (default: the architecture)")
    ex.add_argument("--max-batch-size", type=int, default=32, help="triton: max_batch_size of config.pbtxt")
    ex.add_argument("--json", action="store_true")
    ex.set_defaults(func=cmd_export)

    qz = sub.add_parser("quantize", help="static INT8 quantisation (ONNX Runtime), measured on the val split")
    add_model_argument(qz)
    qz.add_argument("--calib-data", required=True, help="cifar10, cifar100 or an image folder: its train split "
                    "calibrates")
    qz.add_argument("--calib-images", type=int, default=300, help="training images used to calibrate")
    qz.add_argument("--method", default="minmax", choices=["minmax", "entropy", "percentile"])
    qz.add_argument("--val-data", help="data for the before/after top-1 (default: --calib-data)")
    qz.add_argument("--val-split", default="val", choices=["val", "test"])
    qz.add_argument("--val-images", type=int, help="at most this many validation images (default: all)")
    qz.add_argument("--max-drop", type=float, default=1.0, help="refuse a top-1 drop above this many points")
    qz.add_argument("--force", action="store_true", help="write the INT8 model whatever its drop")
    qz.add_argument("--reduce-range", default="auto", choices=["auto", "on", "off"],
                    help="7-bit weights; auto: on for x86 CPUs without VNNI, where u8 x s8 products saturate")
    qz.add_argument("--out", help="output .onnx (default: MODEL-int8.onnx beside MODEL)")
    qz.add_argument("--json", action="store_true")
    qz.set_defaults(func=cmd_quantize)

    pn = sub.add_parser("prune", help="L1 unstructured or structured channel pruning, measured before/after")
    pn.add_argument("model", help="a reslab model file")
    pn.add_argument("--amount", type=float, required=True,
                    help="fraction of weights (l1-unstructured) or of block-internal channels (structured)")
    pn.add_argument("--method", default="l1-unstructured", choices=["l1-unstructured", "structured"])
    pn.add_argument("--data", help="data for top-1 and fine-tuning (default: what the model was trained on)")
    pn.add_argument("--finetune-epochs", type=int, default=0, help="structured: epochs of fine-tuning after")
    pn.add_argument("--lr", type=float, default=0.01, help="fine-tuning learning rate (cosine)")
    pn.add_argument("--batch-size", type=int, default=128)
    pn.add_argument("--val-images", type=int, help="at most this many validation images (default: all)")
    pn.add_argument("--device", default="auto", help="auto (a GPU where there is one) | cpu | cuda | cuda:N")
    pn.add_argument("--out", help="output model file (default: MODEL-pruned.safetensors)")
    pn.add_argument("--json", action="store_true")
    pn.set_defaults(func=cmd_prune)

    sv = sub.add_parser("serve", help="REST API, v2 inference protocol and a web page for one model or several")
    add_model_argument(sv, several=True)
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--backend", default="auto", choices=["auto", *BACKENDS])
    sv.add_argument("--workers", type=int, default=1, help="server processes (each loads the model)")
    sv.add_argument("--max-batch", type=int, default=32, help="images per inference call at most")
    sv.add_argument("--max-wait-ms", type=float, default=5.0, help="how long a batch waits to fill")
    sv.add_argument("--max-upload-mb", type=float, default=20.0, help="larger bodies get 413 before being read")
    sv.add_argument("--max-pixels", type=int, default=50_000_000, help="larger images get 413 before decoding")
    sv.add_argument("--cache-size", type=int, default=1024, help="answers cached by content hash (0 = off)")
    sv.add_argument("--max-queue", type=int, default=256, help="images waiting beyond this get 503 + Retry-After")
    sv.add_argument("--timeout-s", type=float, default=30.0, help="a request without an answer by then gets 504")
    sv.add_argument("--threads", type=int, help="inference threads per worker (default: cores / workers)")
    sv.add_argument("--decode-threads", type=int, help="decoding threads per worker (default: cores / workers)")
    sv.add_argument("--name", help="a single model's name in answers and v2 URLs (default: its architecture)")
    sv.add_argument("--api-key", action="append", metavar="KEY", help="require Authorization: Bearer KEY for "
                    "predictions, model metadata, /info and /metrics (repeatable; also RESLAB_API_KEY=K1,K2)")
    sv.add_argument("--api-key-file", metavar="FILE", help="accepted API keys, one per line")
    sv.add_argument("--ssl-certfile", metavar="PEM", help="serve HTTPS with this certificate (and --ssl-keyfile)")
    sv.add_argument("--ssl-keyfile", metavar="PEM", help="the certificate's private key")
    add_device_flags(sv)
    sv.set_defaults(func=cmd_serve)

    md = sub.add_parser("models", help="list the architectures with parameters and MACs")
    md.add_argument("--image-size", type=int)
    md.add_argument("--json", action="store_true")
    md.set_defaults(func=cmd_models)

    en = sub.add_parser("env", help="this machine: CPU, GPUs, native precisions, versions, usable runtimes")
    en.add_argument("--json", action="store_true")
    en.set_defaults(func=cmd_env)

    cd = sub.add_parser("check-data", help="report classes, counts, sizes, duplicates and unreadable files")
    cd.add_argument("path")
    cd.add_argument("--json", action="store_true")
    cd.set_defaults(func=cmd_check_data)

    pk = sub.add_parser("pack", help="a folder dataset as one file of pre-resized JPEGs (train with --data OUT.npz)")
    pk.add_argument("data", help="an image folder (train/ + val/ [+ test/], or one folder split 70/20/10)")
    pk.add_argument("out", help="the pack to write, e.g. photos.npz")
    pk.add_argument("--short-side", type=int, default=256, help="images are brought down to this short side")
    pk.add_argument("--quality", type=int, default=90, help="JPEG quality of the re-encoded images")
    pk.add_argument("--seed", type=int, default=0, help="the seed of the 70/20/10 split of a single folder")
    pk.add_argument("--split-file", help="a run's split.json: pack exactly that split")
    pk.add_argument("--threads", type=int, default=4)
    pk.add_argument("--json", action="store_true")
    pk.set_defaults(func=cmd_pack)

    from .bench.args import (
        add_bench_data_args,
        add_bench_imbalance_args,
        add_bench_infer_args,
        add_bench_label_issues_args,
        add_bench_multilabel_args,
        add_bench_serve_args,
        add_bench_train_args,
        add_bench_vs_timm_args,
        add_time_to_accuracy_args,
    )

    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench", required=True)
    bt = bench.add_parser("train", help="training images/s: reslab's path against a plain baseline")
    add_bench_train_args(bt)
    bt.set_defaults(func=cmd_bench_train)
    bd = bench.add_parser("data", help="the data loader alone: images/s of each decoding path side by side")
    add_bench_data_args(bd)
    bd.set_defaults(func=cmd_bench_data)
    bi = bench.add_parser("infer", help="CPU inference of real images: the tutorial baseline against each backend")
    add_bench_infer_args(bi)
    bi.set_defaults(func=cmd_bench_infer)
    ta = bench.add_parser("time-to-accuracy", help="train a recipe on CIFAR-10: wall time to each test accuracy")
    add_time_to_accuracy_args(ta)
    ta.set_defaults(func=cmd_bench_time_to_accuracy)
    bm = bench.add_parser("imbalance", help="class weights and the balanced sampler on a 10:1 imbalanced set: "
                          "balanced accuracy against none")
    add_bench_imbalance_args(bm)
    bm.set_defaults(func=cmd_bench_imbalance)
    bml = bench.add_parser("multilabel", help="--task multilabel on pictures of two CIFAR-10 images: test mAP "
                           "against the label-frequency baseline")
    add_bench_multilabel_args(bml)
    bml.set_defaults(func=cmd_bench_multilabel)
    bl = bench.add_parser("label-issues", help="find-label-issues on a copy with 5%% of labels flipped: precision "
                          "and recall of what it flags")
    add_bench_label_issues_args(bl)
    bl.set_defaults(func=cmd_bench_label_issues)
    bs = bench.add_parser("serve", help="reslab serve under load against offline throughput and a plain server")
    add_bench_serve_args(bs)
    bs.set_defaults(func=cmd_bench_serve)
    bv = bench.add_parser("vs-timm", help="reslab's defaults beside timm's train.py on one folder: val top-1 and "
                          "wall time per epoch, median over seeds")
    add_bench_vs_timm_args(bv)
    bv.set_defaults(func=cmd_bench_vs_timm)
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
