"""The app for a browser benchmark: a Streamlit server on a free loopback port with a feature cache of
its own, and headless Chromium's path and arguments (the same as tests/conftest.py)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def link_converted_weights(cache: Path) -> None:
    """Reuse the converted weights (derived from the installed package file) in a fresh cache."""
    weights = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "backbone-lens" / "weights"
    if weights.is_dir():
        (cache / "weights").symlink_to(weights, target_is_directory=True)


def start_app(cache: Path, app: Path = ROOT / "app.py") -> tuple[subprocess.Popen, str]:
    """Start ``streamlit run app`` on 127.0.0.1 with ``BACKBONE_LENS_CACHE=cache`` (its log is
    ``cache/streamlit.log``) and wait until it answers its health check.

    Returns:
        ``(process, url)``.

    Raises:
        RuntimeError: the server did not answer within 90 s (the message ends with its log).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = cache / "streamlit.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless", "true", "--server.address",
         "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=app.parent, stdout=open(log, "w"), stderr=subprocess.STDOUT,
        env={**os.environ, "BACKBONE_LENS_CACHE": str(cache), "PYTHONPATH": str(ROOT)})
    url = f"http://127.0.0.1:{port}"
    for _ in range(180):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("streamlit did not start: " + log.read_text()[-2000:])
