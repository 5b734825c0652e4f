"""``reslab predict-batch`` on Ray: Ray Data reads the files' bytes, an actor pool of ``BatchPredictor`` workers
classifies them, and this process writes the rows as they arrive into whole Parquet parts.

``ray.init()`` without an address starts a local instance; with one, the same job runs on a cluster. Ray
restarts a worker that dies and retries its batch, and only a finished batch's rows reach this process, so each
input is written once; a run stopped part-way resumes from its parts (``parts.done_paths``).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..features.embed import VERSION_LENGTH
from ..formats import model_digest, model_files, read_info
from ..names import is_plain_file
from ..results import Result
from .inputs import is_uri, list_inputs
from .options import PredictBatchCommand
from .parts import done_paths, output_folder, remove_strays, schema, write_part

PART_ROWS = 1024  # rows per part file: a killed run loses at most these, redone on resume


@dataclass
class PredictBatchReport(Result):
    out: Path
    inputs: int  # named by the input
    images: int  # classified by this run
    errors: int  # rows of this run with an error
    skipped: int  # already in --out from an earlier run
    seconds: float  # from the first read to the last part written
    workers: int
    nodes: dict[str, int] = field(default_factory=dict)  # images classified on each Ray node

    def text(self) -> str:
        rate = self.images / max(self.seconds, 1e-9)
        spread = ", ".join(f"{node[:8]}: {count}" for node, count in sorted(self.nodes.items()))
        return (f"{self.images} images -> {self.out} in {self.seconds:.1f} s ({rate:.1f} images/s), {self.workers} "
                f"workers on {len(self.nodes)} node(s) ({spread or 'none'}); {self.errors} errors; {self.skipped} "
                f"already there, skipped")


def resolved_model(cmd: PredictBatchCommand) -> Path:
    """The model as a file: a name (or a checkpoint for one) converted here once, not in every worker."""
    if is_plain_file(cmd.model, cmd.weights):
        return Path(cmd.model)
    from ..models.pretrained import resolve_model  # downloads and converts with torch

    return resolve_model(cmd.model, cmd.weights)


def worker_cpus(cluster_cpus: float, workers: int) -> float:
    """Each worker's share of the cluster's logical CPUs, one CPU left to the tasks that read the files: workers
    that took every CPU would leave the reads none, and the job would wait for ever. (A worker's threads are
    ``--threads-per-worker``; this share only places it.)"""
    return min(1.0, max(cluster_cpus - 1.0, 0.5) / workers)


def error_rows(paths: list[str], error: str, name: str, version: str, dimension: int | None):
    import pyarrow as pa  # pyarrow: the ray extra

    table_schema = schema(dimension)
    columns = {"path": paths, "error": [error] * len(paths), "model": [name] * len(paths),
               "version": [version] * len(paths)}
    return pa.table({f.name: pa.array(columns.get(f.name, [None] * len(paths)), f.type) for f in table_schema},
                    schema=table_schema)


def predict_batch(cmd: PredictBatchCommand) -> PredictBatchReport:
    import pyarrow as pa  # pyarrow and ray: the ray extra
    import ray

    from .rows import BatchPredictor  # pyarrow and ray: loaded with the job

    folder = output_folder(cmd.out)
    if folder.exists():
        remove_strays(folder)
    inputs = list_inputs(cmd.input)
    done = done_paths(folder) if folder.exists() else set()
    todo = [p for p in inputs if p not in done]
    path = resolved_model(cmd)
    info = read_info(path)
    if cmd.embeddings and path.suffix != ".safetensors":
        raise ValueError(f"--embeddings: {path} runs forward only; embeddings come from a reslab model file "
                         f"(.safetensors) or a name")
    name, version = info.spec.arch, model_digest(path, length=VERSION_LENGTH)
    dimension = None
    missing = [p for p in todo if not is_uri(p) and not Path(p).is_file()]
    absent = set(missing)
    readable = [p for p in todo if p not in absent]
    start = time.perf_counter()
    written: set[str] = set()
    errors, nodes = 0, Counter()
    if missing:
        write_part(folder, error_rows(missing, "file not found", name, version, None))
        errors += len(missing)
    if readable:
        ray.init(address=cmd.ray_address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
        gpu = cmd.gpus_per_worker > 0
        threads = cmd.threads_per_worker or max(1, (os.cpu_count() or 1) // cmd.workers)
        files = {p.name: p.read_bytes() for p in model_files(path)}
        data = ray.data.read_binary_files(readable, include_paths=True, ignore_missing_paths=True)
        rows = data.map_batches(
            BatchPredictor, batch_size=cmd.batch_size, batch_format="numpy", concurrency=cmd.workers,
            num_cpus=worker_cpus(ray.cluster_resources().get("CPU", 1.0), cmd.workers),
            num_gpus=cmd.gpus_per_worker or None,
            fn_constructor_kwargs=dict(model_files=ray.put(files), name=name, version=version,
                                       backend="torch" if gpu else cmd.backend, device="cuda" if gpu else "cpu",
                                       threads=threads, topk=cmd.topk, embeddings=cmd.embeddings))
        buffered: list = []
        for table in rows.iter_batches(batch_size=None, batch_format="pyarrow"):
            nodes.update(table.column("node").to_pylist())
            table = table.drop_columns(["node"])
            dimension = dimension or (table.schema.field("embedding").type.list_size if cmd.embeddings else None)
            buffered.append(table)
            written.update(table.column("path").to_pylist())
            errors += table.num_rows - table.column("error").null_count
            if sum(t.num_rows for t in buffered) >= PART_ROWS:
                write_part(folder, pa.concat_tables(buffered))
                buffered = []
        if buffered:
            write_part(folder, pa.concat_tables(buffered))
        unread = [p for p in readable if p not in written]  # gone between listing and reading, or unreadable
        if unread:
            write_part(folder, error_rows(unread, "could not be read", name, version, dimension))
            errors += len(unread)
    return PredictBatchReport(folder, len(inputs), len(todo), errors, len(inputs) - len(todo),
                              time.perf_counter() - start, cmd.workers, dict(nodes))
