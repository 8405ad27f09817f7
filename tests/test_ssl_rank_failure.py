"""A rank that dies makes the others stop with a clear error instead of hanging."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_surviving_rank_stops_with_a_clear_error(tmp_path):
    port = _free_port()
    args = [sys.executable, "-m", "raddino.cli", "pretrain", "--profile", "smoke", "--no-progress"]
    args += ["--out", str(tmp_path / "run"), "--set", "train.epochs=200"]
    args += ["--set", "train.collective_timeout_s=30"]
    procs = []
    for rank in range(2):  # the environment torchrun would set
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "WORLD_SIZE": "2",
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
        }
        procs.append(subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True))
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        assert time.monotonic() < deadline, "training did not start"
        assert procs[0].poll() is None, procs[0].stderr.read()[-2000:]
        time.sleep(0.2)
    procs[1].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    try:
        _, stderr = procs[0].communicate(timeout=90)
    finally:
        for proc in procs:
            proc.kill()
    assert procs[0].returncode != 0
    assert time.monotonic() - killed_at < 60  # well within the collective timeout + start-up
    assert "lost contact with another rank" in stderr, stderr[-2000:]
    assert "last checkpoint" in stderr
