"""bench.json -> bench.md (tables, ratios against the baseline measured in the
same run, the issue's targets) and bench.png (req/s and p99 per target).

    python -m loadtest.report reports/bench.json    # redraw from a saved run
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

BASELINE = "sklearn_gunicorn"
TARGETS = ["sklearn_gunicorn", "fastapi_ort", "fastapi_ort_nginx", "go_direct", "go_nginx", "go_nginx_log0", "go_nginx_log100",
           "nginx_static", "nginx_go_healthz"]
LOADGENS = ["locust", "wrk"]


def find(results: list[dict], target: str, rows: int, loadgen: str, **extra) -> dict | None:
    """The result of one target, request size and load generator."""
    for r in results:
        if (r["target"], r["rows_per_request"], r["loadgen"]) == (target, rows, loadgen) and \
                all(r.get(k) == v for k, v in extra.items()):
            return r
    return None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def goals(bench: dict) -> list[dict]:
    """The issues' targets, each with what this run measured and whether it is met."""
    results = bench["results"]
    go1, sk1 = find(results, "go_nginx", 1, "wrk"), find(results, BASELINE, 1, "wrk")
    go1_cpu, sk1_cpu = find(results, "go_nginx", 1, "locust"), find(results, BASELINE, 1, "locust")
    go1000 = find(results, "go_nginx", 1000, "wrk")
    in_process = next((m for m in bench.get("in_process", []) if m["rows_per_request"] == 1000), None)
    healthz = find(results, "nginx_go_healthz", 1, "wrk")
    out = []

    speedup = ratio(go1 and go1["rps"], sk1 and sk1["rps"])
    p99_ok = go1 and sk1 and go1["p99_ms"] <= sk1["p99_ms"]
    out.append({
        "goal": "nginx + 2 Go replicas vs gunicorn + sklearn, single-record req/s (wrk), at a p99 no worse",
        "wanted": "≥ 30×, p99 ≤ baseline's",
        "measured": None if speedup is None else
        f"{speedup:.1f}× ({go1['rps']:,.0f} vs {sk1['rps']:,.0f} req/s); p99 {go1['p99_ms']:.2f} vs {sk1['p99_ms']:.2f} ms",
        "met": None if speedup is None else bool(speedup >= 30 and p99_ok)})

    cpu = ratio(sk1_cpu and sk1_cpu["cpu_ms_per_request"], go1_cpu and go1_cpu["cpu_ms_per_request"])
    out.append({
        "goal": "server CPU time per single-record request, nginx + 2 Go vs gunicorn (same fixed rate)",
        "wanted": "≤ 1/20 of the baseline's",
        "measured": None if cpu is None else
        f"1/{cpu:.0f} ({go1_cpu['cpu_ms_per_request']:.3f} vs {sk1_cpu['cpu_ms_per_request']:.3f} ms)",
        "met": None if cpu is None else bool(cpu >= 20)})

    rows = ratio(go1000 and go1000["rows_per_s"], in_process and in_process["rows_per_s"])
    out.append({
        "goal": "1,000-row requests: Go rows/s through nginx (wrk) vs sklearn's own predict in process",
        "wanted": "≥ 1×",
        "measured": None if rows is None else
        f"{rows:.2f}× ({go1000['rows_per_s']:,.0f} vs {in_process['rows_per_s']:,.0f} rows/s)",
        "met": None if rows is None else bool(rows >= 1)})

    paired = [r["ratio"] for r in bench.get("paired", []) if r["ratio"] is not None]
    if paired:  # alternating rounds: the median ratio, less at the mercy of one busy minute
        share = statistics.median(paired)
        measured = (f"{100 * share:.0f}%, median of {len(paired)} alternating rounds "
                    f"({100 * min(paired):.0f}–{100 * max(paired):.0f}%)")
    else:
        share = ratio(go1 and go1["rps"], healthz and healthz["rps"])
        measured = None if share is None else f"{100 * share:.0f}% ({go1['rps']:,.0f} vs {healthz['rps']:,.0f} req/s)"
    out.append({
        "goal": "predict through nginx vs nginx proxying to the replicas' /healthz (wrk, single record)",
        "wanted": "≥ 80%",
        "measured": measured,
        "met": None if share is None else bool(share >= 0.8)})

    # The strongest peer: FastAPI + uvicorn + ONNX Runtime, the same model.onnx.
    peer = find(results, "fastapi_ort_nginx", 1, "wrk")
    rounds = [r for r in bench.get("peer_paired", []) if r["ratio"] is not None]
    if rounds:  # alternating rounds, as predict vs /healthz
        lead = statistics.median(r["ratio"] for r in rounds)
        p99 = (statistics.median(r["go_nginx_p99_ms"] for r in rounds),
               statistics.median(r["fastapi_ort_nginx_p99_ms"] for r in rounds))
        measured = (f"{lead:.2f}×, median of {len(rounds)} alternating rounds ({min(r['ratio'] for r in rounds):.2f}–"
                    f"{max(r['ratio'] for r in rounds):.2f}×); median p99 {p99[0]:.2f} vs {p99[1]:.2f} ms")
    else:
        lead = ratio(go1 and go1["rps"], peer and peer["rps"])
        p99 = (go1["p99_ms"], peer["p99_ms"]) if lead is not None else None
        measured = None if lead is None else (f"{lead:.2f}× ({go1['rps']:,.0f} vs {peer['rps']:,.0f} req/s); "
                                              f"p99 {p99[0]:.2f} vs {p99[1]:.2f} ms")
    out.append({
        "goal": "nginx + 2 Go replicas vs FastAPI + ORT behind the same nginx (wrk, single record)",
        "wanted": "≥ 3×, lower p99",
        "measured": measured,
        "met": None if lead is None else bool(lead >= 3 and p99[0] < p99[1])})

    direct, peer_direct = find(results, "go_direct", 1, "wrk"), find(results, "fastapi_ort", 1, "wrk")
    lead = ratio(direct and direct["rps"], peer_direct and peer_direct["rps"])
    out.append({
        "goal": "one Go replica direct vs the FastAPI + ORT workers direct (wrk, single record)",
        "wanted": "≥ 4×",
        "measured": None if lead is None else f"{lead:.2f}× ({direct['rps']:,.0f} vs {peer_direct['rps']:,.0f} req/s)",
        "met": None if lead is None else bool(lead >= 4)})
    return out


def num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def times(value: float | None) -> str:
    """A ratio as 42.0×, 0.77× or 1/26."""
    if value is None:
        return "–"
    if value >= 1:
        return f"{value:.1f}×"
    if value >= 0.1:
        return f"{value:.2f}×"
    return f"1/{1 / value:.0f}" if value > 0 else "0"


def markdown(bench: dict) -> str:
    m, s = bench["machine"], bench.get("settings", {})
    lines = [
        "# skl2go benchmark",
        "",
        f"Model `{s.get('model')}` version {s.get('version')} ({s.get('family')}), "
        f"dynamic batching {s.get('default_batching')} unless stated. Machine: {m.get('cpu')}, {m.get('cores')} cores, "
        f"{m.get('memory_gib')} GiB, Linux {m.get('kernel')}; load average {m.get('load_average_at_start', 0):.2f} "
        f"at the start, {m.get('load_average_at_end', 0):.2f} at the end; commit {m.get('commit')}; "
        f"{bench.get('elapsed_s', 0):.0f} s.",
        "",
        f"Locust: {s.get('users')} users back to back for {s.get('duration')} s (req/s, latency), then "
        f"{s.get('fixed_duration')} s at a fixed rate ({', '.join(f'{v:g} req/s at {k} row(s) per request' for k, v in (s.get('fixed_rate') or {}).items())}) "
        f"for the servers' CPU time per request. wrk: {s.get('wrk_connections')} connections, "
        f"{s.get('wrk_threads')} threads, {s.get('wrk_duration')} s (peak req/s; CPU per request at that peak). "
        "Load generators share the 2 cores with the servers. Ratios are against gunicorn + sklearn "
        "with the same load generator and request size, in this run.",
        "",
        "## Targets",
        "",
        "| goal | wanted | measured | met |",
        "|---|---|---|---|",
    ]
    for g in goals(bench):
        met = "–" if g["met"] is None else ("yes" if g["met"] else "**no**")
        lines.append(f"| {g['goal']} | {g['wanted']} | {g['measured'] or 'not measured'} | {met} |")

    results = bench["results"]
    for rows in sorted({r["rows_per_request"] for r in results}):
        lines += ["", f"## {rows:,} row{'s' if rows > 1 else ''} per request", "",
                  "| target | loadgen | req/s | rows/s | p50 ms | p95 ms | p99 ms | failures | server CPU ms/req "
                  "| req/s vs baseline | CPU vs baseline |",
                  "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
        for loadgen in LOADGENS:
            base = find(results, BASELINE, rows, loadgen)
            for target in TARGETS:
                r = find(results, target, rows, loadgen)
                if r is None:
                    continue
                lines.append(
                    f"| {target} | {loadgen} | {num(r['rps'])} | {num(r['rows_per_s'])} | {num(r['p50_ms'], 2)} "
                    f"| {num(r['p95_ms'], 2)} | {num(r['p99_ms'], 2)} | {r['failures']} "
                    f"| {num(r['cpu_ms_per_request'], 3)} | {times(ratio(r['rps'], base and base['rps']))} "
                    f"| {times(ratio(r['cpu_ms_per_request'], base and base['cpu_ms_per_request']))} |")

    if bench.get("paired"):
        lines += ["", "## Predict vs /healthz through nginx, alternating rounds", "",
                  f"Single-record predict and nginx proxying to the replicas' /healthz, wrk "
                  f"{s.get('paired_duration')} s each, the order flipped every round.", "",
                  "| round | first | predict req/s | /healthz req/s | predict / healthz | failures |",
                  "|--:|---|--:|--:|--:|--:|"]
        for r in bench["paired"]:
            share = "–" if r["ratio"] is None else f"{100 * r['ratio']:.0f}%"
            lines.append(f"| {r['round']} | {r['first']} | {num(r['go_nginx_rps'])} | {num(r['nginx_go_healthz_rps'])} "
                         f"| {share} | {r['failures']} |")

    if bench.get("peer_paired"):
        lines += ["", "## nginx + 2 Go vs FastAPI + ORT behind the same nginx, alternating rounds", "",
                  f"Single-record predict through each stack's nginx, wrk {s.get('paired_duration')} s each, "
                  "the order flipped every round.", "",
                  "| round | first | Go req/s | FastAPI req/s | Go / FastAPI | Go p99 ms | FastAPI p99 ms | failures |",
                  "|--:|---|--:|--:|--:|--:|--:|--:|"]
        for r in bench["peer_paired"]:
            lines.append(f"| {r['round']} | {r['first']} | {num(r['go_nginx_rps'])} | {num(r['fastapi_ort_nginx_rps'])} "
                         f"| {num(r['ratio'], 2)}× | {num(r['go_nginx_p99_ms'], 2)} | {num(r['fastapi_ort_nginx_p99_ms'], 2)} "
                         f"| {r['failures']} |")

    if bench.get("grpc"):
        lines += ["", "## gRPC through nginx", "",
                  "The Open Inference Protocol's ModelInfer (raw contents, as tritonclient.grpc sends them) "
                  "through nginx's gRPC port to the same replicas, from serve-go/cmd/skl2go-load "
                  "(Go, bounded; no ghz here) with as many calls in flight as wrk's connections. "
                  "The REST rows are go_nginx under wrk, same run.", "",
                  "| rows | gRPC req/s | gRPC p99 ms | REST req/s | REST p99 ms | gRPC / REST | failures | server CPU ms/req |",
                  "|--:|--:|--:|--:|--:|--:|--:|--:|"]
        for r in bench["grpc"]:
            rest = find(bench["results"], "go_nginx", r["rows_per_request"], "wrk")
            lines.append(f"| {r['rows_per_request']:,} | {num(r['rps'])} | {num(r['p99_ms'], 2)} "
                         f"| {num(rest and rest['rps'])} | {num(rest and rest['p99_ms'], 2)} "
                         f"| {times(ratio(r['rps'], rest and rest['rps']))} | {r['failures']} "
                         f"| {num(r['cpu_ms_per_request'], 3)} |")

    if bench.get("overload"):
        lines += ["", "## Overload: beyond the stack's capacity", "",
                  f"Single-record predict through nginx, open loop (serve-go/cmd/skl2go-load -rate), "
                  f"replicas with --queue-timeout `deadline`, {s.get('overload_duration')} s per rate with at most {s.get('overload_workers'):,} requests "
                  "in flight, at factors of go_nginx's wrk req/s. 200s' latency from when each request was due "
                  "(the generator's backlog counts, as in wrk2) and from when it was sent; 503s' from when it was "
                  "sent. Shed: the replicas' skl2go_shed_total during the run.", "",
                  "| deadline | × capacity | offered req/s | sent | 200 | 503 + Retry-After | 503 without | other errors "
                  "| 200 p50 / p99 ms, due | 200 p50 / p99 ms, sent | 503 p50 / p99 ms, sent | shed (replicas) |",
                  "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
        for r in bench["overload"]:
            lines.append(f"| {r.get('deadline', '')} | {r['factor']:.2f} | {num(r['offered_rps'])} | {num(r['sent'])} | {num(r['ok'])} "
                         f"| {num(r['unavailable_retry_after'])} | {num(r['unavailable_no_retry_after'])} "
                         f"| {num(r['other_errors'])} | {num(r['ok_p50_ms'], 1)} / {num(r['ok_p99_ms'], 1)} "
                         f"| {num(r.get('ok_sent_p50_ms'), 1)} / {num(r.get('ok_sent_p99_ms'), 1)} "
                         f"| {num(r['unavailable_p50_ms'], 1)} / {num(r['unavailable_p99_ms'], 1)} "
                         f"| {', '.join(num(n) for n in r['shed_total'])} |")

    batching = bench.get("batching") or []
    variants = list(dict.fromkeys(r["batching"] for r in batching))
    default = s.get("default_batching")
    if len(variants) > 1 and default in variants:
        others = [v for v in variants if v != default]
        lines += ["", "## Dynamic batching", "",
                  f"Server settings: {json.dumps(s.get('batching_settings', {}))}; `{default}` is the default. "
                  "The replicas are restarted for each setting, so the columns are minutes apart.", "",
                  "| target | rows | loadgen | " + " | ".join(f"req/s {v}" for v in variants) + " | "
                  + " | ".join(f"{v} vs {default}" for v in others) + " | "
                  + " | ".join(f"p99 ms {v}" for v in variants) + " | "
                  + " | ".join(f"CPU ms/req {v}" for v in variants) + " |",
                  "|---|--:|---|" + "--:|" * (4 * len(variants) - 1)]
        for base in (r for r in batching if r["batching"] == default):
            row = [find(batching, base["target"], base["rows_per_request"], base["loadgen"], batching=v) for v in variants]
            if any(r is None for r in row):
                continue
            lines.append(
                f"| {base['target']} | {base['rows_per_request']:,} | {base['loadgen']} | "
                + " | ".join(num(r["rps"]) for r in row) + " | "
                + " | ".join(times(ratio(r["rps"], base["rps"])) for r in row[1:]) + " | "
                + " | ".join(num(r["p99_ms"], 2) for r in row) + " | "
                + " | ".join(num(r["cpu_ms_per_request"], 3) for r in row) + " |")

    logged = [r for r in results if r["target"] == "go_nginx_log100"]
    if logged:
        counts = bench.get("inference_log") or {}
        lines += ["", "## The inference log at 100% vs off, through nginx", "",
                  f"go_nginx_log100: the stack of go_nginx with every inference written (make up INFERENCE_LOG=1), "
                  f"measured in turn with go_nginx_log0, the same stack with the log off; "
                  f"{num(counts.get('written'))} records written, {num(counts.get('dropped'))} dropped "
                  "(a full queue drops, never waits).", "",
                  "| rows | loadgen | req/s off | req/s 100% | 100% vs off | p99 ms off | p99 ms 100% "
                  "| CPU ms/req off | CPU ms/req 100% |",
                  "|--:|---|--:|--:|--:|--:|--:|--:|--:|"]
        for r in logged:
            off = find(results, "go_nginx_log0", r["rows_per_request"], r["loadgen"])
            if off is None:
                continue
            lines.append(f"| {r['rows_per_request']:,} | {r['loadgen']} | {num(off['rps'])} | {num(r['rps'])} "
                         f"| {times(ratio(r['rps'], off['rps']))} | {num(off['p99_ms'], 2)} | {num(r['p99_ms'], 2)} "
                         f"| {num(off['cpu_ms_per_request'], 3)} | {num(r['cpu_ms_per_request'], 3)} |")

    lines += families_markdown(bench)

    if bench.get("in_process"):
        lines += ["", "## sklearn's own predict, in process (one thread, no HTTP)", "",
                  "| rows per call | ms per predict | rows/s |", "|--:|--:|--:|"]
        for m_ in bench["in_process"]:
            lines.append(f"| {m_['rows_per_request']:,} | {m_['ms_per_call']:.2f} | {m_['rows_per_s']:,.0f} |")

    lines += ["", "CPU time comes from /proc/<pid>/stat in clock ticks (10 ms): a run's figure is exact to "
              "about ±10 ms per server process, divided by the requests of that run. bench.json's `runs` "
              "has every run (requests, seconds, CPU seconds, offered rate, errors).", ""]
    return "\n".join(lines)


def families_markdown(bench: dict) -> list[str]:
    """The model families phase: each family through nginx under wrk, the
    replicas' memory, and the largest forest's hot reload."""
    families = bench.get("families") or []
    lines = []
    if families:
        lines += ["", "## Model families through nginx (wrk)", "",
                  "Each family's model served by the same 2 replicas behind nginx, every family loaded on each, "
                  "wrk as above. Ratios are against `linear` at the same request size, in this run.", "",
                  "| family | task | rows | req/s | rows/s | p50 ms | p99 ms | failures | server CPU ms/req "
                  "| req/s vs linear |",
                  "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
        for r in families:
            linear = next((x for x in families if x["family"] == "linear"
                           and x["rows_per_request"] == r["rows_per_request"]), None)
            lines.append(f"| `{r['family']}` | {r['task']} | {r['rows_per_request']:,} | {num(r['rps'])} "
                         f"| {num(r['rows_per_s'])} | {num(r['p50_ms'], 2)} | {num(r['p99_ms'], 2)} | {r['failures']} "
                         f"| {num(r['cpu_ms_per_request'], 3)} | {times(ratio(r['rps'], linear and linear['rps']))} |")
    memory = bench.get("memory") or {}
    if memory.get("all_families"):
        every = memory["all_families"]
        lines += ["", "## Memory per replica (RSS)", "",
                  "VmRSS of each replica from /proc/<pid>/status, in MiB: once ready, and after the requests "
                  "of the table above (or, alone, after a few seconds of 1,000-row requests).", "",
                  "| models loaded | after load | after requests |", "|---|--:|--:|",
                  f"| all {len(every['families'])} families | {' / '.join(num(v, 1) for v in every['rss_mb_after_load'])} "
                  f"| {' / '.join(num(v, 1) for v in every['rss_mb_after_requests'])} |"]
        for a in memory.get("alone") or []:
            lines.append(f"| `{a['family']}` alone | {num(a['rss_mb_after_load'], 1)} "
                         f"| {num(a['rss_mb_after_requests'], 1)} |")
    if memory.get("load_seconds_at_start"):
        lines += ["", "Load time at start-up (skl2go_model_load_seconds: read, load, check), seconds per replica: "
                  + "; ".join(f"`{f}` {' / '.join(f'{v:.2f}' for v in secs)}"
                              for f, secs in memory["load_seconds_at_start"].items()) + "."]
    swap = bench.get("hot_reload")
    if swap:
        lines += ["", f"## Hot reload of the largest forest (`{swap['model']}`)", "",
                  f"{swap['clients']} clients send single-row predicts through nginx one after another; version "
                  f"{swap['old_version']} ({num(swap['onnx_mb'], 1)} MiB of ONNX) is published again as version "
                  f"{swap['new_version']}, as export publishes, and the replicas get SIGHUP. \"during\" is from "
                  "the publish until every replica answers with the new version; the load time is the replicas' "
                  "skl2go_model_load_seconds.", "",
                  f"Publish to every replica serving it: {swap['publish_to_ready_s']:.2f} s; replicas' load: "
                  f"{', '.join(f'{v:.2f}' for v in swap['load_seconds'])} s; answers by version: "
                  f"{', '.join(f'v{k}: {v:,}' for k, v in swap['versions'].items())}.", "",
                  "| window | requests | failures | p50 ms | p99 ms | max ms |", "|---|--:|--:|--:|--:|--:|"]
        for window in ("before", "during", "after"):
            w = swap[window]
            lines.append(f"| {window} | {w['requests']:,} | {w['failures']} | {num(w['p50_ms'], 2)} "
                         f"| {num(w['p99_ms'], 2)} | {num(w['max_ms'], 2)} |")
    return lines


def chart(bench: dict, path: Path) -> Path:
    """req/s (log scale) and p99 per target, one bar per request size, for each load generator."""
    results = bench["results"]
    sizes = sorted({r["rows_per_request"] for r in results})
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    width = 0.8 / max(1, len(sizes))
    for col, loadgen in enumerate(LOADGENS):
        for row_i, (metric, label) in enumerate([("rps", "requests/s (log)"), ("p99_ms", "p99 latency, ms (log)")]):
            ax = axes[row_i][col]
            for i, rows in enumerate(sizes):
                values = [(find(results, t, rows, loadgen) or {}).get(metric) for t in TARGETS]
                xs = [j + (i - (len(sizes) - 1) / 2) * width for j in range(len(TARGETS))]
                kept = [(x, v) for x, v in zip(xs, values) if v]
                if kept:
                    ax.bar([x for x, _ in kept], [v for _, v in kept], width,
                           label=f"{rows:,} row{'s' if rows > 1 else ''}/request")
            ax.set_yscale("log")
            ax.set_xticks(range(len(TARGETS)), [t.replace("_", "\n", 1) for t in TARGETS], fontsize=8)
            ax.set_title(f"{loadgen}: {label}", fontsize=10)
            ax.grid(axis="y", alpha=0.3)
            if row_i == 0 and col == 0:
                ax.legend(fontsize=8)
    s = bench.get("settings", {})
    fig.suptitle(f"skl2go vs sklearn + gunicorn — {s.get('model')} v{s.get('version')} ({s.get('family')}), "
                 f"{bench['machine'].get('cores')} cores shared with the load generator", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(bench: dict, out: Path) -> None:
    """bench.md and bench.png next to bench.json."""
    out = Path(out)
    (out / "bench.md").write_text(markdown(bench))
    chart(bench, out / "bench.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("bench_json", nargs="?", default="reports/bench.json")
    args = parser.parse_args(argv)
    path = Path(args.bench_json)
    write(json.loads(path.read_text()), path.parent)
    print(f"wrote {path.parent / 'bench.md'} and {path.parent / 'bench.png'}")


if __name__ == "__main__":
    main()
