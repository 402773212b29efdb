"""The retraining loop: monitor, and when the data moved, retrain on the
newest months and stage the result as a challenger.

    python -m monitor loop --name trip_duration [--incoming run/incoming] [--every 3600] [--once]

One cycle, every step a subprocess of the same commands a person would run,
logged to stdout and to $STATE/monitor-loop/loop.jsonl:

  1. report   `python -m monitor report` (.venv-monitor) on the window since
              the last cycle: drift and quality of the served version.
  2. decide   retrain when an input or the prediction drifted, or RMSE went
              above RMSE_FACTOR x the validation RMSE (accuracy below
              validation - ACCURACY_DROP), and new TLC files were dropped
              into the incoming folder since the last retraining.
  3. fit      `python -m train fit` on the newest incoming files, same family.
  4. export   `python -m train export` into the challengers repository
              ($STATE/challengers, which no replica reads): the parity gate
              runs there; nothing is published if one row is out of bound.
  5. register the challenger takes the next version number after production's;
              with MLFLOW_TRACKING_URI set, export registered it and the
              alias `challenger` is pointed at it. The champion never moves.

A failed step ends the cycle, logged, and leaves production untouched: the
replicas' models/ is never written. A plain loop rather than an orchestrator:
the cycle is five commands in a row, and Prefect would bring a server and
its database for what `make monitor-loop` does with the venvs already here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from train import repository

ROOT = Path(__file__).resolve().parents[1]
MONITOR_PY = ROOT / ".venv-monitor" / "bin" / "python"
RMSE_FACTOR = 1.5
ACCURACY_DROP = 0.05


class StepFailed(RuntimeError):
    pass


class Loop:
    def __init__(self, name: str, state: Path, models: Path, incoming: Path, challengers: Path | None = None,
                 since: str = "7d", min_rows: int = 100):
        self.name, self.state, self.models, self.incoming = name, Path(state), Path(models), Path(incoming)
        self.dir = self.state / "monitor-loop"
        self.challengers = Path(challengers) if challengers else self.state / "challengers"
        self.since, self.min_rows = since, min_rows
        self.dir.mkdir(parents=True, exist_ok=True)

    def log(self, step: str, status: str, **details) -> None:
        entry = {"time": datetime.now(timezone.utc).isoformat(), "model": self.name, "step": step, "status": status,
                 **details}
        print(f"[loop] {step}: {status} {json.dumps(details) if details else ''}".rstrip(), flush=True)
        with open(self.dir / "loop.jsonl", "a") as f:
            f.write(json.dumps(entry) + "\n")

    def run(self, step: str, argv: list[str]) -> str:
        began = time.monotonic()
        env = {k: v for k, v in os.environ.items() if k != "PROMOTE"}  # the champion never moves here
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env)
        (self.dir / f"{step}.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            self.log(step, "failed", code=done.returncode, error=" | ".join(tail))
            raise StepFailed(step)
        self.log(step, "ok", seconds=round(time.monotonic() - began, 1))
        return done.stdout

    def memory(self) -> dict:
        path = self.dir / "state.json"
        return json.loads(path.read_text()) if path.is_file() else {"trained_on": []}

    def remember(self, memory: dict) -> None:
        (self.dir / "state.json").write_text(json.dumps(memory, indent=2) + "\n")

    def cycle(self) -> dict:
        """One cycle; returns what happened ({"retrained": bool, …}). Never raises for a failed step."""
        try:
            return self._cycle()
        except StepFailed as failed:
            self.log("cycle", "stopped", failed_step=str(failed), production="untouched")
            return {"retrained": False, "failed": str(failed)}

    def _cycle(self) -> dict:
        out = self.dir / "reports"
        self.run("report", [str(MONITOR_PY), "-m", "monitor", "report", "--state", str(self.state), "--models",
                            str(self.models), "--name", self.name, "--since", self.since, "--out", str(out),
                            "--min-rows", str(self.min_rows),
                            *(["--db", os.environ["MONITOR_DB"]] if os.environ.get("MONITOR_DB") else [])])
        summary = json.loads(max((out / self.name).glob("*.json"), key=lambda p: p.stat().st_mtime).read_text())
        reasons = triggers(summary)
        self.log("decide", "retrain" if reasons else "no drift", reasons=reasons, version=summary["version"])
        if not reasons:
            return {"retrained": False, "summary": summary}
        memory = self.memory()
        files = sorted(str(p) for p in self.incoming.glob("*.parquet")) if self.incoming.is_dir() else []
        new = [f for f in files if f not in memory["trained_on"]]
        if not new:
            self.log("decide", "waiting", why=f"no new TLC file in {self.incoming}")
            return {"retrained": False, "summary": summary}
        meta = repository.load_metadata(self.models / self.name / str(summary["version"]))
        build = self.dir / "build"
        shutil.rmtree(build / self.name, ignore_errors=True)
        self.run("fit", [sys.executable, "-m", "train", "fit", "--data", *new, "--model", meta["family"], "--name",
                         self.name, "--build", str(build)])
        self.run("export", [sys.executable, "-m", "train", "export", "--name", self.name, "--build", str(build),
                            "--models", str(self.challengers)])
        version = self.register()
        memory["trained_on"] = sorted(set(memory["trained_on"]) | set(new))
        self.remember(memory)
        return {"retrained": True, "summary": summary, "challenger": version}

    def register(self) -> int:
        """Give the new challenger the version after production's highest, and
        point MLflow's `challenger` alias at it when a registry is used."""
        staged = self.challengers / self.name
        newest = repository.versions(staged)[-1]
        target = max(repository.versions(self.models / self.name) + [newest - 1]) + 1
        if target != newest:
            os.rename(staged / str(newest), staged / str(target))
            meta_file = staged / str(target) / repository.METADATA_FILE
            meta_file.write_text(json.dumps({**json.loads(meta_file.read_text()), "version": target}, indent=2) + "\n")
        version = target
        details = {"version": version, "path": str(staged / str(version))}
        if os.environ.get("MLFLOW_TRACKING_URI"):
            from train import tracking

            import mlflow
            found = mlflow.MlflowClient().search_model_versions(f"name='{self.name}'")
            registered = max(int(v.version) for v in found)
            tracking.set_alias(self.name, registered, "challenger")
            details["registry_version"] = registered
        self.log("register", "challenger", **details)
        return version


def triggers(summary: dict) -> list[str]:
    """Why the window calls for retraining (empty: it does not)."""
    reasons = [f"input {i} drifted" for i in summary["drifted_inputs"]]
    if summary["prediction"]["drifted"]:
        reasons.append("prediction drifted")
    q = summary["quality"]
    if q.get("rmse") is not None and q.get("validation_rmse") and q["rmse"] > RMSE_FACTOR * q["validation_rmse"]:
        reasons.append(f"RMSE {q['rmse']:.3g} > {RMSE_FACTOR} x validation {q['validation_rmse']:.3g}")
    if q.get("accuracy") is not None and q.get("validation_accuracy") and \
            q["accuracy"] < q["validation_accuracy"] - ACCURACY_DROP:
        reasons.append(f"accuracy {q['accuracy']:.3g} < validation {q['validation_accuracy']:.3g} - {ACCURACY_DROP}")
    return reasons


def main(args) -> int:
    loop = Loop(args.name, args.state, args.models, args.incoming, args.challengers, args.since, args.min_rows)
    cycles = 0
    while True:
        loop.cycle()
        cycles += 1
        if args.once or (args.cycles and cycles >= args.cycles):
            return 0
        time.sleep(args.every)
