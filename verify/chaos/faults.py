"""Faults the chaos run and the tests inflict on a running topology: broken
model versions, slow clients, malformed request bodies.
"""

from __future__ import annotations

import hashlib
import socket
import time
from pathlib import Path

from train import repository


def publish_corrupt(model_dir: Path) -> Path:
    """Publish the next version of a model as a whole, atomically renamed
    directory whose model.onnx is cut in half. model.json records the cut
    file's checksum, so the checksum passes and ONNX Runtime itself must
    refuse the graph: the case a broken converter or a bad copy produces."""
    source = repository.latest_version(model_dir.parent, model_dir.name)
    cut = (source / repository.MODEL_FILE).read_bytes()
    cut = cut[: len(cut) // 2]
    meta = repository.load_metadata(source)
    meta["files"]["onnx"]["sha256"] = hashlib.sha256(cut).hexdigest()
    return repository.publish(model_dir, {repository.MODEL_FILE: cut}, meta)


def slow_clients(host: str, port: int, count: int, path: str, hold: float) -> list[socket.socket]:
    """Open `count` connections that each send the start of a predict request
    (headers not finished) and then go quiet: a slowloris. The caller waits
    `hold` seconds at most before looking at them; see closed_by_server."""
    conns = []
    for _ in range(count):
        conn = socket.create_connection((host, port), timeout=hold)
        conn.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n".encode())
        conns.append(conn)
    return conns


def closed_by_server(conn: socket.socket, timeout: float) -> bool:
    """True if the server closes the connection (after whatever answer it
    sends) within timeout seconds."""
    conn.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if conn.recv(65536) == b"":
                return True
    except ConnectionResetError:
        return True
    except OSError:  # socket.timeout: still open
        return False
    return False
