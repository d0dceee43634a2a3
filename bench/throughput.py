"""Allowed GETs through gunicorn: no CORS, flask-cors at 3 origins, the engine at 3 and at
1,000,000 origins.

Each variant runs in a gunicorn of its own (one sync worker, ``bench.served``); the bench
sends the same allowed GET from a few client threads, the variants interleaved in rounds. The
machine is shared and the client runs on the same cores, so requests per wall-clock second
mostly measure the client and the neighbours: the figure that counts is the CPU time the
worker itself spent per request (read from ``/proc``), and the requests per CPU-second of the
worker that follow from it, as ratios to no CORS.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from app.config import ROOT

from . import apps, served
from .harness import Budget
from .report import ratio, table

VARIANTS = served.VARIANTS
LABELS = {"bare": "no CORS", "flask_cors": "flask-cors, 3 origins",
          "engine": "engine, 3 origins", "engine_1m": "engine, 1,000,000 origins"}
# Only in the 1,000,000-origin policy: proof that that worker serves it.
LAST_ORIGIN = apps.allowed_origin(served.LARGE - 1)
# Building a million-origin snapshot takes seconds, many more on a busy machine.
START_TIMEOUT = 300
CLIENTS = 4
TICKS = os.sysconf("SC_CLK_TCK")


def run(budget: Budget) -> dict[str, object]:
    rounds, per_round = (2, 100) if budget.smoke else (10, 600)
    print(f"== allowed GET through gunicorn (1 sync worker each, {rounds} rounds x "
          f"{per_round} requests, {CLIENTS} client threads) ==")
    origin = served.ORIGINS[0]
    servers = {name: _start(name) for name in VARIANTS}
    cpu = dict.fromkeys(VARIANTS, 0.0)
    wall = dict.fromkeys(VARIANTS, 0.0)
    try:
        workers = {name: _worker_of(process) for name, (process, _) in servers.items()}
        for name, (_, port) in servers.items():
            _send(port, origin, 50)  # warm up
            assert _allowed(port, origin) == (name != "bare"), f"{name} answers as expected"
            assert _allowed(port, LAST_ORIGIN) == (name == "engine_1m"), f"{name}'s policy"
        for i in range(rounds):
            order = VARIANTS if i % 2 == 0 else tuple(reversed(VARIANTS))
            for name in order:
                before = _cpu_seconds(workers[name])
                started = time.perf_counter()
                _send(servers[name][1], origin, per_round)
                wall[name] += time.perf_counter() - started
                cpu[name] += _cpu_seconds(workers[name]) - before
    finally:
        for process, _ in servers.values():
            process.terminate()
        for process, _ in servers.values():
            process.wait(timeout=30)
    total = rounds * per_round
    results: dict[str, object] = {}
    rows = []
    for name in VARIANTS:
        cpu_us = cpu[name] / total * 1e6
        rps_cpu = total / cpu[name] if cpu[name] else float("nan")
        rps_wall = total / wall[name]
        results[name] = {"worker_cpu_us_per_request": cpu_us,
                         "requests_per_worker_cpu_second": rps_cpu,
                         "requests_per_wall_second": rps_wall}
        rows.append([LABELS[name], f"{cpu_us:.0f}", f"{rps_cpu:,.0f}",
                     ratio(rps_cpu / _rps(results, "bare")), f"{rps_wall:,.0f}"])
    print(table(["variant", "worker CPU µs/request", "requests/CPU-second", "ratio",
                 "requests/s (wall)"], rows))
    print(f"  worker CPU is read in ticks: within {rounds * 1e6 / TICKS / total:.1f} µs per "
          "request; "
          "wall-clock rates include the client, on the same shared cores")
    return results


def _rps(results: dict[str, object], name: str) -> float:
    entry = results[name]
    assert isinstance(entry, dict)
    return float(entry["requests_per_worker_cpu_second"])


def _start(name: str) -> tuple[subprocess.Popen, int]:
    from .fleet import free_port

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}",
         "--timeout", str(START_TIMEOUT), "--log-level", "warning",
         f"bench.served:build({name!r})"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            _allowed(port, served.ORIGINS[0])
            return process, port
        except OSError:
            time.sleep(0.1)
    process.terminate()
    raise RuntimeError(f"gunicorn for {name} did not answer within {START_TIMEOUT} s")


def _worker_of(master: subprocess.Popen) -> int:
    children = Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()
    if len(children) != 1:
        raise RuntimeError(f"expected one gunicorn worker, found {children}")
    return int(children[0])


def _cpu_seconds(pid: int) -> float:
    # Fields 14 and 15 of /proc/<pid>/stat (after the command in parentheses): utime, stime.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _request(port: int, origin: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", apps.PATH, headers={"Origin": origin})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def _allowed(port: int, origin: str) -> bool:
    return _request(port, origin).getheader("Access-Control-Allow-Origin") == origin


def _send(port: int, origin: str, count: int) -> None:
    remaining = iter(range(count))
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                if next(remaining, None) is None:
                    return
            response = _request(port, origin)
            if response.status != 200:
                raise RuntimeError(f"answer {response.status}")

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
