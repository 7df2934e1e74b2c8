"""Whether a hub id can be loaded now: from the local cache, or over a network that answers.

Left to huggingface_hub, an unreachable hub costs half a minute of retries and ends in a
misleading "does not appear to have a file named config.json". One quick request answers
the question first, and the user reads one line that says what to do.
"""

from __future__ import annotations

import functools
import os
from dataclasses import replace
from urllib.parse import urlsplit

from loratui.engine.errors import ModelError
from loratui.engine.families.base import ModelSpec

DEFAULT_ENDPOINT = "https://huggingface.co"
PROBE_TIMEOUT_S = 3.0


def hub_endpoint() -> str:
    """The hub's address as huggingface_hub uses it (``HF_ENDPOINT``, else huggingface.co)."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_offline() -> bool:
    """True when the user asked huggingface_hub to stay offline (``HF_HUB_OFFLINE``)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


@functools.lru_cache(maxsize=8)
def hub_reachable(endpoint: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """True when ``endpoint`` answers an HTTP request within ``timeout_s`` (any status: an
    answer is enough). Proxies in the environment are honoured, as the download would."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{endpoint}/api/whoami-v2", method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s):
            return True
    except urllib.error.HTTPError:
        return True  # 401 and friends: the hub answered
    except (OSError, ValueError):
        return False


def loadable_spec(spec: ModelSpec) -> ModelSpec:
    """``spec`` as it can be loaded now, or a ModelError at once (no retries) naming the fix.

    A hub id in the local cache loads from its snapshot when the hub cannot be reached; one
    that is not downloaded needs the hub. Other kinds are returned as they are.
    """
    if spec.kind != "hub":
        return spec
    from loratui.engine.families.discover import cached_hub_model

    snapshot = cached_hub_model(spec.location)
    endpoint = hub_endpoint()
    online = not hub_offline() and hub_reachable(endpoint)
    if online:
        return spec
    if snapshot is not None:  # downloaded before: train from the cache, offline
        return replace(spec, kind="diffusers", location=str(snapshot))
    host = urlsplit(endpoint).netloc or endpoint
    if hub_offline():
        raise ModelError(
            f"cannot download {spec.location}: HF_HUB_OFFLINE is set and it is not in the Hugging Face cache",
            "pass a local file or folder (--base-model PATH), or unset HF_HUB_OFFLINE to download it",
        )
    raise ModelError(
        f"cannot reach {host} to download {spec.location}",
        "pass a local file or folder (--base-model PATH), or connect and run again",
    )
