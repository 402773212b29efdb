"""Scheduled scoring: every trip file of a directory not scored yet.

    python -m batch score-new --dir incoming/ --out-dir scored/ --name trip_duration [--alias champion]

Run it from cron (or the retraining loop) as each month's TLC file lands in
DIR: each `<stem>.parquet` of DIR (not its subdirectories, hidden files
skipped) is scored into OUT_DIR/`<stem>`.scored.parquet unless that file
exists. A run is idempotent: a file scored is never scored again, and a
failed one (a file still being copied, not TLC-shaped) leaves no output, so
the next run tries it again. One version scores a whole run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from train.data import NotTripData

from .model import Published

SUFFIX = ".scored.parquet"


@dataclass(frozen=True)
class Outcome:
    """What became of one file of DIR."""

    source: Path
    out: Path
    status: str  # scored, skipped (scored by an earlier run) or failed
    error: str = ""


def pending(directory: Path, out_dir: Path) -> list[tuple[Path, Path]]:
    """(file, its output) for the files of `directory` without an output yet, oldest name first."""
    directory, out_dir = Path(directory), Path(out_dir)
    if not directory.is_dir():
        raise NotTripData(f"{directory}: no such directory")
    files = sorted(p for p in directory.glob("*.parquet") if p.is_file() and not p.name.startswith((".", "_")))
    return [(f, out_dir / f"{f.stem}{SUFFIX}") for f in files]


def score_new(directory: Path, out_dir: Path, published: Published,
              score: Callable[[Path, Path, Published], dict], log=print) -> list[Outcome]:
    """Score each file of `directory` with no output in `out_dir` with
    `score(file, out, published)` (an engine's score); one file failing
    does not stop the others."""
    outcomes = []
    for source, out in pending(directory, out_dir):
        if out.exists():
            outcomes.append(Outcome(source, out, "skipped"))
            continue
        try:
            score(source, out, published)
        except Exception as exc:  # noqa: BLE001  (Spark raises its own types; every failure is reported)
            log(f"[score-new] {source}: not scored: {exc}")
            outcomes.append(Outcome(source, out, "failed", str(exc)))
        else:
            outcomes.append(Outcome(source, out, "scored"))
    counts = {s: sum(o.status == s for o in outcomes) for s in ("scored", "skipped", "failed")}
    log(f"[score-new] {directory}: {counts['scored']} scored, {counts['skipped']} already scored, "
        f"{counts['failed']} failed, into {out_dir} with {published.name} version {published.version}")
    return outcomes
