"""Faults the chaos run and the tests inflict on a running topology: broken
model versions, slow clients, malformed request bodies.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from train import export


def publish_corrupt(model_dir: Path) -> Path:
    """Publish the next version of a model as a whole, atomically renamed
    directory whose model.onnx is cut in half. model.json records the cut
    file's checksum, so the checksum passes and ONNX Runtime itself must
    refuse the graph: the case a broken converter or a bad copy produces."""
    versions = sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())
    source = model_dir / str(versions[-1])
    tmp = Path(tempfile.mkdtemp(prefix=".incoming-", dir=model_dir))
    try:
        onnx_bytes = (source / export.MODEL_FILE).read_bytes()
        cut = onnx_bytes[: len(onnx_bytes) // 2]
        (tmp / export.MODEL_FILE).write_bytes(cut)
        meta = json.loads((source / export.METADATA_FILE).read_text())
        version = export.next_version(model_dir)
        meta["version"] = version
        meta["files"]["onnx"]["sha256"] = hashlib.sha256(cut).hexdigest()
        (tmp / export.METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        os.chmod(tmp, 0o755)
        os.rename(tmp, model_dir / str(version))
        return model_dir / str(version)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
