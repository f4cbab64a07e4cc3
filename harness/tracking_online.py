"""Whether W&B can go online from here: an API key, and a server that answers HTTP in time.

``harness.tracking`` asks once per process (``online_blocker``) and logs offline when this says
why not. The probe is one HTTP request with a total deadline (connect, TLS, request, status line),
run in a daemon thread: a server that accepts connections and never answers, or trickles bytes,
costs at most the deadline, never W&B's own ~90 s of retries per run.
"""

from __future__ import annotations

import http.client
import netrc
import os
import threading
from urllib.parse import urlparse


def find_online_blocker(base: str, deadline_s: float) -> str | None:
    """Why W&B at ``base`` cannot be used online (no API key; no HTTP answer within ``deadline_s``), or None."""
    url = urlparse(base)
    host, port = url.hostname or "api.wandb.ai", url.port or (80 if url.scheme == "http" else 443)
    key = os.environ.get("WANDB_API_KEY")
    if not key:
        try:
            key = (netrc.netrc().authenticators(host) or (None, None, None))[2]
        except (OSError, netrc.NetrcParseError):
            key = None
    if not key:
        return f"no W&B API key is set for {host} (run `wandb login` or set WANDB_API_KEY)"
    return http_probe(url.scheme or "https", host, port, deadline_s)


def http_probe(scheme: str, host: str, port: int, deadline_s: float) -> str | None:
    """Send one HTTP request to the server and wait for its status line, at most ``deadline_s`` in
    all (a thread: a server that trickles bytes cannot stretch it); why it failed, or None. Any
    HTTP status counts as an answer: the probe asks whether the server talks, not what it says."""
    outcome: list[str | None] = []

    def probe() -> None:
        kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        conn = kind(host, port, timeout=deadline_s)
        try:
            conn.request("GET", "/healthz", headers={"User-Agent": "ckd-harness probe"})
            conn.getresponse().close()
            outcome.append(None)
        except OSError as e:
            outcome.append(f"the W&B server {host}:{port} cannot be reached ({e.strerror or e})")
        except Exception as e:  # http.client's protocol errors: it answered, but not with HTTP
            outcome.append(f"the W&B server {host}:{port} did not answer HTTP ({type(e).__name__}: {e})")
        finally:
            conn.close()

    worker = threading.Thread(target=probe, name="wandb-probe", daemon=True)
    worker.start()
    worker.join(deadline_s)
    if not outcome:
        return f"the W&B server {host}:{port} did not answer within {deadline_s:g} s"
    return outcome[0]
