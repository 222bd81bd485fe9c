"""`python -m eval.serve` under load: throughput and latency with dynamic batching on vs off (issue 21).

    python benchmarks/bench_serve.py RECORD [RECORD ...] [--requests 256] [--clients 1 16] [--write]

For each recorded run (with artifacts kept), a real server is started on loopback (`python -m eval.serve RECORD
--port P`, batching on, then `--no-batching`), and bounded concurrent clients (httpx, one text per request, the run's
own test texts in order, cycled) send a fixed number of requests, then stop. Reported per (run, batching, clients):
requests/s and p50/p95/p99 latency; every answer is compared across the settings (batching must change none). The
headline ratio is batching on at the most clients vs batching off with one client (one request at a time, what a
hand-written server does). `--write` puts the table into BENCHMARKS.md between the bench_serve markers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q))


async def drive(url: str, texts: list[str], clients: int) -> tuple[float, list[float], list[str]]:
    import httpx

    latencies: list[float] = [0.0] * len(texts)
    labels: list[str] = [""] * len(texts)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(texts)):
        queue.put_nowait(i)

    async def client(c: httpx.AsyncClient) -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            t0 = time.perf_counter()
            r = await c.post(f"{url}/v1/classify", json={"texts": [texts[i]]})
            latencies[i] = (time.perf_counter() - t0) * 1000
            r.raise_for_status()
            labels[i] = r.json()["predictions"][0]["label"]

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=600, limits=limits) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(clients)))
        wall = time.perf_counter() - t0
    return wall, latencies, labels


def start(record: str, port: int, batching: bool, max_wait_ms: float, threads: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "eval.serve", record, "--port", str(port), "--max-wait-ms", str(max_wait_ms)]
    if not batching:
        cmd.append("--no-batching")
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads),
                                 "MKL_NUM_THREADS": str(threads)})


def wait_ready(proc: subprocess.Popen, url: str, timeout: float = 600) -> None:
    import httpx

    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the server at {url} was not ready after {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()  # SIGTERM: uvicorn's graceful shutdown
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def bench(record: str, requests: int, clients: list[int], port: int, max_wait_ms: float, threads: int) -> dict:
    rec = json.loads(Path(record).read_text())
    rows = [json.loads(x) for x in Path(record).with_suffix(".jsonl").read_text().splitlines() if x.strip()]
    texts = [rows[i % len(rows)]["text"] for i in range(requests)]
    results, answers = [], {}
    url = f"http://127.0.0.1:{port}"
    for batching in (False, True):
        proc = start(record, port, batching, max_wait_ms, threads)
        try:
            wait_ready(proc, url)
            asyncio.run(drive(url, texts[:8], 2))  # warm-up (first-call allocations, thread pools)
            for k in clients:
                wall, lat, labels = asyncio.run(drive(url, texts, k))
                answers[(batching, k)] = labels
                results.append({"batching": batching, "clients": k, "n": requests,
                                "rps": requests / wall, "p50": percentile(lat, 50), "p95": percentile(lat, 95),
                                "p99": percentile(lat, 99)})
                print(f"{rec['track']} batching={'on' if batching else 'off'} clients={k}: "
                      f"{requests / wall:.1f} req/s, p50 {percentile(lat, 50):.0f} ms", file=sys.stderr)
        finally:
            stop(proc)
    base = next(r for r in results if not r["batching"] and r["clients"] == min(clients))
    top = next(r for r in results if r["batching"] and r["clients"] == max(clients))
    same = len({tuple(v) for v in answers.values()}) == 1
    recorded = [rows[i % len(rows)]["pred"] for i in range(requests)]
    return {"record": record, "track": rec["track"], "model": rec["model"], "method": rec["method"],
            "run_id": rec["run_id"], "results": results, "ratio": top["rps"] / base["rps"], "identical": same,
            "as_recorded": all(v == recorded for v in answers.values()), "clients": clients}


def table(runs: list[dict], argv: list[str], wait: float) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    out = ["## Serving a recorded run: dynamic batching on vs off (`benchmarks/bench_serve.py`, issue 21)", "",
           f"`python benchmarks/bench_serve.py {' '.join(argv)}`", "",
           f"Machine: {cpu}, {os.cpu_count()} cores, no GPU, load average {load:.1f} at the end of the run (other "
           "jobs shared the cores); server and clients on the same cores over loopback; the server's torch threads "
           "fixed by OMP_NUM_THREADS (--threads) in every setting. One text per request, the "
           "run's own test texts, a fixed number of requests per row; `p50/p95/p99`: request latency seen by the "
           "client. Batching on: up to the evaluation's batch size per model call, "
           f"{'no wait (what queued during the previous call)' if wait == 0 else f'{wait:g} ms wait'}. "
           "Off: one model call per request, one at a time.", "",
           "| run | batching | clients | n | requests/s | p50 ms | p95 ms | p99 ms |",
           "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        name = f"{r['track']} {r['model']} {r['method']}"
        for x in r["results"]:
            out.append(f"| {name} | {'on' if x['batching'] else 'off'} | {x['clients']} | {x['n']} | {x['rps']:.1f} | "
                       f"{x['p50']:.0f} | {x['p95']:.0f} | {x['p99']:.0f} |")
    out.append("")
    for r in runs:
        out.append(f"- **{r['track']}** ({r['run_id']}): batching on at {max(r['clients'])} clients = "
                   f"**{r['ratio']:.1f}×** the requests/s of one request at a time; answers identical across "
                   f"settings: {'yes' if r['identical'] else 'NO'}; equal to the run's per-example file: "
                   f"{'yes' if r['as_recorded'] else 'NO'}.")
    return "\n".join(out) + "\n"


def write(md: str, path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    block = f"<!-- bench_serve:start -->\n{md}<!-- bench_serve:end -->\n"
    pattern = re.compile(r"<!-- bench_serve:start -->.*?<!-- bench_serve:end -->\n", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("records", nargs="+", help="record paths of runs that kept their artifacts")
    ap.add_argument("--requests", type=int, default=256, help="requests per row (default 256)")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 16], help="concurrent clients (default 1 16)")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--max-wait-ms", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads of the server (OMP_NUM_THREADS), the same in every setting (default 1)")
    ap.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    args = ap.parse_args(argv)
    runs = [bench(r, args.requests, sorted(args.clients), args.port, args.max_wait_ms, args.threads)
            for r in args.records]
    md = table(runs, argv, args.max_wait_ms)
    print(md)
    if args.write:
        write(md, REPO / "BENCHMARKS.md")
    return 0 if all(r["identical"] for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
