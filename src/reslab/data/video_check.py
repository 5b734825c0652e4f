"""``reslab check-data`` of a video folder: per split and class, the videos with their durations, frame rates and
resolutions, and which files cannot be decoded (each opened with TorchCodec, its first frame decoded)."""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from .clips import open_video
from .images import UnreadableImageError
from .splits import VideoSource


def survey_video(path: Path) -> dict[str, Any]:
    """A video's duration, frame rate and size; ``{"error": ...}`` where FFmpeg cannot decode it."""
    try:
        decoder = open_video(VideoSource(path))
        decoder[0]  # the first frame: a header that opens is not yet a video that decodes
        meta = decoder.metadata
        return {"seconds": float(meta.duration_seconds or 0.0), "fps": round(float(meta.average_fps or 0.0), 2),
                "size": f"{meta.width}x{meta.height}", "frames": int(meta.num_frames or 0)}
    except (UnreadableImageError, RuntimeError, IndexError) as e:
        return {"error": str(e)}


def check_video_split(folder: Path, classes: list[str], files: list[tuple[Path, int]], root: Path,
                      unreadable: list[dict[str, str]]) -> dict[str, Any]:
    per_class: dict[str, dict[str, Any]] = {}
    for index, name in enumerate(classes):
        surveyed = [(p, survey_video(p)) for p, label in files if label == index]
        good = [s for _, s in surveyed if "error" not in s]
        unreadable += [{"file": str(p.relative_to(root)), "reason": s["error"]} for p, s in surveyed if "error" in s]
        seconds = [s["seconds"] for s in good]
        per_class[name] = {
            "videos": len(good), "seconds_total": round(sum(seconds), 1),
            "seconds_median": round(statistics.median(seconds), 2) if seconds else None,
            "fps": dict(Counter(s["fps"] for s in good)), "sizes": dict(Counter(s["size"] for s in good)),
        }
    counts = [c["videos"] for c in per_class.values()]
    return {"videos": sum(counts), "per_class": per_class,
            "imbalance": round(max(counts) / max(1, min(counts)), 2) if counts else None}


def format_video_report(report: dict[str, Any]) -> str:
    lines = [f"{report['root']}: {len(report['classes'])} classes of videos"]
    for split, info in report["splits"].items():
        lines.append(f"  {split}: {info['videos']} videos (max/min class ratio {info['imbalance']})")
        for name, c in info["per_class"].items():
            fps = ", ".join(f"{k} fps x{v}" for k, v in c["fps"].items()) or "-"
            sizes = ", ".join(f"{k} x{v}" for k, v in c["sizes"].items()) or "-"
            lines.append(f"    {name}: {c['videos']} videos, {c['seconds_total']} s (median {c['seconds_median']} s); "
                         f"{fps}; {sizes}")
    lines.append(f"  unreadable: {len(report['unreadable'])} files")
    lines += [f"    {item['file']}: {item['reason']}" for item in report["unreadable"]]
    return "\n".join(lines)
