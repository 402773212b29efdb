"""Where a run writes: a temporary path beside OUT, renamed to OUT at the end.

A run that fails leaves nothing behind (no partial OUT, no temporary file),
and an OUT that exists is replaced only when the caller says so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path


PART = "part-00000.parquet"  # the local engine's one file in a directory OUT


def single_file(out: Path) -> bool:
    """OUT is one parquet file when it ends in .parquet, else a directory of
    parquet files (a table's path), whichever engine writes it."""
    return Path(out).suffix == ".parquet"


class OutputExists(FileExistsError):
    """OUT exists and --overwrite was not given."""


def refuse_existing(out: Path, overwrite: bool) -> None:
    if not overwrite and (out.exists() or out.is_symlink()):
        raise OutputExists(f"{out} exists: pass --overwrite (make score … OVERWRITE=1) to replace it")


@contextlib.contextmanager
def replacing(out: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path beside `out` (same file system, so the final
    rename is atomic); rename it to `out` when the block succeeds, remove it
    when it fails. Works for a file or a directory."""
    out = Path(out)
    refuse_existing(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.incoming-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"the run wrote nothing to {tmp}")
        refuse_existing(out, overwrite)  # another run may have written it meanwhile
        if out.exists() or out.is_symlink():
            # A rename cannot replace a directory (a Spark run's output), nor a
            # file with a directory: move the old output aside, then remove it
            # once the new one is in place.
            old = out.with_name(f".{out.name}.replaced-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            _remove(old)
        else:
            os.replace(tmp, out)
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
