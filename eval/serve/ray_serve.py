"""Beyond one machine: the same predictor and the same app as a Ray Serve deployment with N replicas.

    python -m eval.serve RUN --replicas 2 [--ray-address auto]

Each replica loads the run's predictor and runs the app of eval/serve/app.py (its own dynamic batcher included)
through Ray Serve's FastAPI ingress; Ray Serve's HTTP proxy spreads requests over the replicas (no balancer of our
own). Ray is the sweep engine already (`sweep` extra); serving also needs `ray[serve]` (docs/serve.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eval.run.records import REPO_ROOT


class ServedRun:
    """One replica: the run loaded as `python -m eval.serve` loads it, and its app."""

    def __init__(self, record_path: str, app_kw: dict) -> None:
        from eval.serve.load import load

        self.served = load(record_path)
        self.app_kw = app_kw

    def __serve_build_asgi_app__(self) -> Any:  # Ray Serve's deferred ingress: called after __init__
        from eval.serve.app import create_app

        return create_app(self.served, **self.app_kw)


def deploy(record_path: Path, *, replicas: int, host: str, port: int, app_kw: dict, address: str | None = None,
           cpus_per_replica: float = 1.0, blocking: bool = True) -> str:
    """Start (or join) Ray, deploy `replicas` copies of the run's app at http://host:port/, return that URL."""
    import ray
    from ray import serve

    env = {"env_vars": {"PYTHONPATH": str(REPO_ROOT)}}
    if address:
        ray.init(address=address, runtime_env=env, ignore_reinit_error=True)
    else:
        ray.init(include_dashboard=False, runtime_env=env, ignore_reinit_error=True)
    serve.start(http_options={"host": host, "port": port})
    cls = serve.deployment(num_replicas=replicas, ray_actor_options={"num_cpus": cpus_per_replica},
                           name="served-run")(serve.ingress()(ServedRun))
    serve.run(cls.bind(str(Path(record_path).resolve()), app_kw), name="served-run", route_prefix="/",
              blocking=blocking)
    return f"http://{host}:{port}"


def shutdown() -> None:
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()
