"""Serve a recorded run behind an HTTP API whose answers equal the evaluated ones (docs/serve.md).

    python -m eval.serve results/runs/<task>/<track>/<run_id>.json                  # a record path
    python -m eval.serve <run_id> --port 8000                                      # a run id under results/
    python -m eval.serve --task drugs --labels 256                                 # the run recommend picks
    python -m eval.serve RUN --check          # its own test items through the API: agreement must be 100%
    curl -s localhost:8000/v1/classify -H 'Content-Type: application/json' -d '{"texts": ["Worked wonders"]}'
"""

from __future__ import annotations

import argparse
import logging
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m eval.serve", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", nargs="?", help="a record path (results/runs/<task>/<track>/<run_id>.json) or a run id")
    ap.add_argument("--results-dir", default="results", help="where run ids are looked up (default: results)")
    ap.add_argument("--task", help="with --labels: serve the run `python -m eval.decide.recommend` picks")
    ap.add_argument("--labels", type=int, help="your labelled-data budget (with --task)")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--max-texts", type=int, default=64, help="texts per request at most (default: 64)")
    ap.add_argument("--max-batch", type=int, default=None,
                    help="texts per model call at most (default: the batch size the evaluation used)")
    ap.add_argument("--max-wait-ms", type=float, default=0.0,
                    help="how long a batch waits for more requests once it has one (default 0: it takes what queued "
                         "while the previous batch ran, so a lone request never waits)")
    ap.add_argument("--no-batching", action="store_true", help="one model call per request, one at a time")
    ap.add_argument("--check", action="store_true",
                    help="ask the API for the run's own test items, print the agreement with its per-example file "
                         "(exit 1 below 100%%), and stop")
    ap.add_argument("--replicas", type=int, default=None,
                    help="serve through Ray Serve with this many replicas of the model (needs ray[serve])")
    ap.add_argument("--ray-address", default=None,
                    help="with --replicas: join this Ray cluster (default: a local one)")
    ap.add_argument("--graceful-timeout", type=float, default=30.0,
                    help="on Ctrl-C / SIGTERM, seconds in-flight requests get to finish (default: 30)")
    args = ap.parse_args(argv)
    if args.run is None and (args.task is None or args.labels is None):
        ap.error("name a run (a record path or a run id), or give --task T --labels N")
    if args.run is not None and (args.task or args.labels is not None):
        ap.error("give either a run or --task/--labels, not both")
    for name in ("max_texts", "port"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.replicas is not None and args.replicas < 1:
        ap.error("--replicas must be >= 1")
    if args.max_batch is not None and args.max_batch < 1:
        ap.error("--max-batch must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    from eval.serve.load import load
    from eval.serve.predictor import ServeError

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        print(f"error: serving needs {exc.name}: pip install -e '.[serve]'", file=sys.stderr)
        return 2
    try:
        served = load(args.run, args.results_dir, args.task, args.labels)
    except (ServeError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for note in served.notes:
        print(note, file=sys.stderr)
    if args.replicas:
        return _ray(args, served)
    from eval.serve.app import create_app

    app = create_app(served, max_texts=args.max_texts, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                     batching=not args.no_batching)
    if args.check:
        from eval.serve.check import describe, parity

        for name in ("httpx", "eval.serve"):  # one line per request would drown the result
            logging.getLogger(name).setLevel(logging.WARNING)
        try:
            res = parity(served, app, per_request=min(args.max_texts, 8))
        except ServeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"parity {served.run_id}: {res['agree']}/{res['n']} test items answered as recorded "
              f"({100 * res['rate']:.1f}%)")
        for m in res["mismatches"][:10]:
            print(f"  {describe(m)}")
        return 0 if res["agree"] == res["n"] else 1
    import uvicorn

    where = f"http://{args.host}:{args.port}"
    batching = "off" if args.no_batching else \
        f"up to {app.state.batcher.max_batch} texts, waiting {args.max_wait_ms:g} ms"
    print(f"serving {served.describe()} at {where} (POST {where}/v1/classify, docs {where}/docs; batching "
          f"{batching})",
          file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                timeout_graceful_shutdown=args.graceful_timeout)
    return 0


def _ray(args: argparse.Namespace, served) -> int:  # noqa: ANN001 - eval.serve.load.Served
    """The same app as a Ray Serve deployment of `--replicas` copies (eval/serve/ray_serve.py)."""
    try:
        from eval.serve import ray_serve
    except ImportError as exc:
        print(f"error: --replicas needs {exc.name}: pip install -e '.[serve-ray]'", file=sys.stderr)
        return 2
    app_kw = {"max_texts": args.max_texts, "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms,
              "batching": not args.no_batching}
    try:
        import ray.serve  # noqa: F401
    except ImportError as exc:
        print(f"error: --replicas needs Ray Serve ({exc.name} is missing): pip install -e '.[serve-ray]'",
              file=sys.stderr)
        return 2
    where = f"http://{args.host}:{args.port}"
    print(f"serving {served.describe()} at {where} through Ray Serve, {args.replicas} replica(s)", file=sys.stderr,
          flush=True)
    if not args.check:
        ray_serve.deploy(served.path, replicas=args.replicas, host=args.host, port=args.port, app_kw=app_kw,
                         address=args.ray_address)
        return 0
    try:
        url = ray_serve.deploy(served.path, replicas=args.replicas, host=args.host, port=args.port, app_kw=app_kw,
                               address=args.ray_address, blocking=False)
        from eval.serve.check import parity

        res = parity(served, url=url, per_request=min(args.max_texts, 8), concurrency=2 * args.replicas)
    finally:
        ray_serve.shutdown()
    print(f"parity {served.run_id} ({args.replicas} Ray Serve replicas): {res['agree']}/{res['n']} test items "
          f"answered as recorded ({100 * res['rate']:.1f}%)")
    from eval.serve.check import describe

    for m in res["mismatches"][:10]:
        print(f"  {describe(m)}")
    return 0 if res["agree"] == res["n"] else 1
