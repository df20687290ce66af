"""``python -m dev bench upload-memory``: the served host's memory while it takes a large upload.

Starts ``python -m dev serve`` on a fresh data directory, uploads one file of
``--megabytes`` MB through HTTP (multipart, as twine sends it), waits until the
file is served from the files storage, and prints the server's resident memory
before and at its peak (``VmHWM``). Then it sends the headers of an upload
larger than the limit, with no body, and times the refusal: the host answers
413 from ``Content-Length`` without waiting for the body.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import click

from dev.bench import bench, report
from dev.views import MAX_UPLOAD_BYTES

_BOUNDARY = "warehouse-tuf-bench-boundary"
_CHUNK = 2**20
_REFUSAL_WAIT_S = 10


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _memory_kb(pid: int, field: str) -> int:
    """``VmRSS`` or ``VmHWM`` (peak) of process ``pid``, in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


def _wait_for(url: str, server: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise click.ClickException(f"the host exited with status {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.2)
    raise click.ClickException(f"{url} did not answer within {timeout:.0f} s")


def _multipart(fields: dict[str, str], filename: str, path: Path) -> tuple[list[bytes], int]:
    """The parts around the file of a multipart upload, and the total body length."""
    head = "".join(f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
                   for name, value in fields.items())
    head += (f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="content"; filename="{filename}"\r\n'
             "Content-Type: application/octet-stream\r\n\r\n")
    tail = f"\r\n--{_BOUNDARY}--\r\n"
    parts = [head.encode(), tail.encode()]
    return parts, len(parts[0]) + path.stat().st_size + len(parts[1])


def _body(parts: list[bytes], path: Path) -> Iterator[bytes]:
    yield parts[0]
    with path.open("rb") as source:
        yield from iter(lambda: source.read(_CHUNK), b"")
    yield parts[1]


def _upload(port: int, auth: str, fields: dict[str, str], filename: str, path: Path) -> int:
    parts, length = _multipart(fields, filename, path)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    connection.putrequest("POST", "/legacy/")
    connection.putheader("Authorization", auth)
    connection.putheader("Content-Type", f"multipart/form-data; boundary={_BOUNDARY}")
    connection.putheader("Content-Length", str(length))
    connection.endheaders()
    for chunk in _body(parts, path):
        connection.send(chunk)
    response = connection.getresponse()
    response.read()
    connection.close()
    if response.status != 200:
        raise click.ClickException(f"upload answered {response.status} {response.reason}")
    return length


def _refusal(port: int, auth: str, length: int) -> tuple[str, float]:
    """Send only the headers of a ``length``-byte upload; the status line and the time to it."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=_REFUSAL_WAIT_S) as connection:
        connection.sendall((f"POST /legacy/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\n"
                            f"Content-Type: multipart/form-data; boundary={_BOUNDARY}\r\n"
                            f"Content-Length: {length}\r\n\r\n").encode())
        try:
            status = connection.makefile("rb").readline().decode().strip()
        except TimeoutError:
            status = f"no answer in {_REFUSAL_WAIT_S} s (the server waits for the body)"
    return status, time.monotonic() - started


@bench.command("upload-memory")
@click.option("--megabytes", default=95, show_default=True, type=int, help="Size of the uploaded file.")
@click.option("--json", "as_json", is_flag=True, help="Also print the figures as JSON.")
def upload_memory(megabytes: int, as_json: bool) -> None:
    """Server memory during one large upload, and the refusal of an oversized one."""
    with tempfile.TemporaryDirectory(prefix="tuf-bench-upload-") as work:
        work_path = Path(work)
        port = _free_port()
        env = {**os.environ, "TUF_DEV_DATA": str(work_path / "data"), "PORT": str(port)}
        log = (work_path / "serve.log").open("wb")
        server = subprocess.Popen([sys.executable, "-m", "dev", "serve"], env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_for(f"{base}/simple/", server, timeout=180)
            idle_kb = _memory_kb(server.pid, "VmRSS")
            upload = work_path / "memdemo-1.0-py3-none-any.whl"
            with upload.open("wb") as out:
                for _ in range(megabytes):
                    out.write(os.urandom(_CHUNK))
            blake2 = hashlib.blake2b(upload.read_bytes(), digest_size=32).hexdigest()
            auth = "Basic " + base64.b64encode(b"tuf-dev:tuf-dev").decode()
            fields = {":action": "file_upload", "name": "memdemo", "version": "1.0",
                      "filetype": "bdist_wheel", "pyversion": "py3"}
            started = time.monotonic()
            sent = _upload(port, auth, fields, upload.name, upload)
            path = f"{blake2[:2]}/{blake2[2:4]}/{blake2[4:]}/{upload.name}"
            _wait_for(f"{base}/packages/{path}", server, timeout=120)
            stored = time.monotonic() - started
            peak_kb = _memory_kb(server.pid, "VmHWM")
            status, refused_in = _refusal(port, auth, 2 * MAX_UPLOAD_BYTES)
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
    figures = {
        "upload_mb": round(sent / 2**20, 1), "idle_rss_mb": round(idle_kb / 1024, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1), "peak_over_idle_mb": round((peak_kb - idle_kb) / 1024, 1),
        "upload_to_served_s": round(stored, 2), "oversized_status": status,
        "oversized_refused_ms": round(refused_in * 1000, 1),
    }
    report(figures, as_json)
