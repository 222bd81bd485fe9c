"""Where a model's weights come from, decided once for every track: a local folder, an offline registry package
(for an alias that has one, when HF_HUB_OFFLINE is set or the hub cannot be reached), or the hub.

    plan = locate("gemma3-270m")     # Weights(kind="offline", ref="<package>"), or kind "local" / "hub"
    plan.label                       # "offline:<package>": part of a prompting run's identity (the offline GGUF
                                     # package is a 4-bit quantisation, not the hub's weights)

The causal-LM loader (eval/lm/causal.py), the encoder track (encoders/modeling.py) and the prompting `hf` backend all
ask this module, so a run's spec, its cache key and what is loaded agree.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

from eval.lm.models import resolve


@lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """A TCP probe, because a failing `from_pretrained` takes ~25 s of retries before it gives up."""
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def offline_mode() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Weights:
    kind: str  # local | offline | hub
    ref: str  # the folder, the offline package's name, or the hub id

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.ref}"


def locate(name: str) -> Weights:
    """Local folder > offline package (offline mode or hub unreachable) > hub id. Nothing is loaded."""
    path = Path(name).expanduser()
    if path.is_dir():
        return Weights("local", str(path.resolve()))
    info = resolve(name)
    if info.offline and (offline_mode() or not hub_reachable()):
        return Weights("offline", info.offline["package"])
    return Weights("hub", info.id_for("hf"))
