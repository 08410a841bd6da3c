"""Slow clients (partial bodies, held open) against the real server: /health keeps answering.

serve.py runs gunicorn with gevent workers by default: a connection waiting for the rest of
its body holds a greenlet, not one of a handful of threads (issue 12: with 2 gthread workers
x 4 threads, 10 such connections made every /health time out).
"""
from __future__ import annotations

import shutil
import socket

import pytest
import requests

from tests.api.conftest import RECORD, LiveServer

SLOW_CLIENTS = 100


def hold_partial_bodies(port: int, n: int) -> list[socket.socket]:
    held = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"POST /prediction HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100000\r\n\r\n{\"records\": [")
        held.append(s)
    return held


@pytest.mark.timeout(600)
def test_health_answers_while_100_slow_clients_hold_partial_bodies(tmp_path, template_state):
    state = tmp_path / "state"
    shutil.copytree(template_state, state, symlinks=True)
    server = LiveServer(state, workers=2).wait_ready()   # the shipped defaults: gevent workers
    held: list[socket.socket] = []
    try:
        held = hold_partial_bodies(server.port, SLOW_CLIENTS)
        answered = 0
        for _ in range(20):   # fresh connections: both workers get some
            r = requests.get(f"{server.url}/health", timeout=10)
            answered += r.status_code == 200
        assert answered == 20
        r = requests.post(f"{server.url}/prediction", json={"records": [RECORD]}, timeout=30)
        assert r.status_code == 200 and r.json()["n"] == 1
        # the held clients are still connected (not dropped to make room)
        still_open = 0
        for s in held:
            s.setblocking(False)
            try:
                still_open += s.recv(1) != b""
            except BlockingIOError:
                still_open += 1
        assert still_open == SLOW_CLIENTS
    finally:
        for s in held:
            s.close()
        server.stop()
