"""Upload overhead of warehouse-tuf inside real Warehouse, and commit-to-signed latency.

    $WAREHOUSE_PYTHON integration/warehouse/bench_uploads.py [--uploads 200] [--latency-uploads 30] [--json]

Two Warehouses run side by side on this machine, each with its own PostgreSQL
database, private Redis, ``celery -A warehouse worker`` and beat, served by
waitress (``configure().make_wsgi_app()``):

- **with**: the tree in ``WAREHOUSE_TREE`` (patched to enable the extension),
  bootstrapped from a real ceremony payload;
- **without**: a pristine tree unpacked from ``$WAREHOUSE_SRC`` (default
  ``../shared/warehouse/warehouse-280d3b457.tar.gz`` beside the repository), no patch.

Both get the same user, the same project name and the same sequence of wheel
uploads (``POST /legacy/``, as twine sends them, keep-alive connection). After
a few warm-up uploads each, uploads alternate request by request (with,
without; then without, with; ...), and each request's wall time, from sending
to the last byte of the response, is recorded on the client. Figures: p50,
p99 (nearest rank), mean and max of each side, and the ratios with/without.

The with/without difference of request times is within this machine's noise
(p99 moves by tens of ms between runs), so the extension's own work inside
each upload request is also measured directly: the "with" web process is
``tests/serve_warehouse_timed.py``, which puts a timer around each of the
extension's session listeners (``record_removals``, ``record_additions``,
``record_bulk_deletes``, ``queue_publish``, ``forget_pending``) before
Warehouse's ``configure()`` registers them, and writes the time they took in
each ``POST /legacy/`` (one line per upload request). Figures: p50, p99, max
(and mean) of that per-request time over the measured uploads, and the calls
and time of each listener.

Then the latency from an upload's response to its file being signed: one
upload at a time to the "with" Warehouse, polling every 20 ms until the
current ``timestamp.json`` reaches a snapshot whose bin for ``File.path``
lists the file (what a client refreshing at that moment would see).

``--json`` prints every figure as one JSON object on the last line.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import http.client
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "tests"))

from warehouse_stack import (  # noqa: E402
    REPO,
    SetupError,
    Stack,
    ensure_static_manifests,
    python_version_of,
    wait_until,
    warehouse_inputs,
)

PROJECT = "bench-pkg"
# The extension's session listeners that tests/serve_warehouse_timed.py times.
LISTENERS = ("record_removals", "record_additions", "record_bulk_deletes", "queue_publish",
             "forget_pending")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, int(-(-fraction * len(ordered) // 1)))  # ceil
    return ordered[min(rank, len(ordered)) - 1]


def summary(values: list[float]) -> dict:
    return {"n": len(values), "p50_ms": round(percentile(values, 0.50) * 1000, 2),
            "p99_ms": round(percentile(values, 0.99) * 1000, 2),
            "mean_ms": round(statistics.fmean(values) * 1000, 2), "max_ms": round(max(values) * 1000, 2)}


def make_wheel(version: str, nonce: str) -> tuple[str, bytes]:
    """A small valid wheel of PROJECT at ``version`` (unique bytes by ``nonce``)."""
    module = PROJECT.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": f'VERSION = "{version}"\nNONCE = "{nonce}"\n'.encode(),
        f"{dist_info}/METADATA": (f"Metadata-Version: 2.1\nName: {PROJECT}\nVersion: {version}\n"
                                  "Summary: warehouse-tuf upload benchmark\n").encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: bench_uploads\nRoot-Is-Purelib: true\n"
                              b"Tag: py3-none-any\n",
    }
    record = "".join(
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
        f"{len(data)}\n" for name, data in files.items()
    ) + f"{dist_info}/RECORD,,\n"
    files[f"{dist_info}/RECORD"] = record.encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data)
    return f"{module}-{version}-py3-none-any.whl", buffer.getvalue()


def file_path(filename: str, data: bytes) -> str:
    """Warehouse's File.path: blake2b-256 of the content, split, then the filename."""
    digest = hashlib.blake2b(data, digest_size=32).hexdigest()
    return f"{digest[:2]}/{digest[2:4]}/{digest[4:]}/{filename}"


class Uploader:
    """``POST /legacy/`` with a wheel, as twine does, over one keep-alive connection."""

    def __init__(self, stack: Stack, token: str) -> None:
        self.port = stack.web_port
        self.auth = "Basic " + base64.b64encode(f"__token__:{token}".encode()).decode()
        self.conn: http.client.HTTPConnection | None = None

    def upload(self, version: str, filename: str, data: bytes) -> float:
        fields = {
            ":action": "file_upload", "protocol_version": "1", "metadata_version": "2.1",
            "name": PROJECT, "version": version, "filetype": "bdist_wheel", "pyversion": "py3",
            "summary": "warehouse-tuf upload benchmark",
            "md5_digest": hashlib.md5(data).hexdigest(), "sha256_digest": hashlib.sha256(data).hexdigest(),
            "blake2_256_digest": hashlib.blake2b(data, digest_size=32).hexdigest(),
        }
        boundary = f"----bench{hashlib.sha256(data).hexdigest()[:24]}"
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                 for k, v in fields.items()]
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="content"; '
                     f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
                     + data + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}",
                   "Authorization": self.auth, "Content-Length": str(len(body))}
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
                self.conn.connect()
            started = time.perf_counter()
            try:
                self.conn.request("POST", "/legacy/", body=body, headers=headers)
                response = self.conn.getresponse()
                payload = response.read()
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
                continue
            elapsed = time.perf_counter() - started
            if response.will_close:
                self.conn.close()
                self.conn = None
            if response.status != 200:
                raise RuntimeError(f"upload of {filename} answered {response.status}: {payload[:500]!r}")
            return elapsed
        raise AssertionError("unreachable")


class SignedWatcher:
    """Is a target in the bin the current published timestamp reaches? (local reads, cached)"""

    def __init__(self, metadata: Path) -> None:
        from tuf.api.metadata import Metadata

        self.metadata = metadata
        targets = Metadata.from_file(str(metadata / "1.targets.json")).signed
        self.succinct = targets.delegations.succinct_roles
        self._snapshot: tuple[int, dict] | None = None

    def signed(self, path: str) -> bool:
        try:
            timestamp = json.loads((self.metadata / "timestamp.json").read_bytes())["signed"]
            version = timestamp["meta"]["snapshot.json"]["version"]
            if self._snapshot is None or self._snapshot[0] != version:
                snapshot = json.loads((self.metadata / f"{version}.snapshot.json").read_bytes())["signed"]
                self._snapshot = (version, snapshot["meta"])
            role = self.succinct.get_role_for_target(path)
            bin_version = self._snapshot[1][f"{role}.json"]["version"]
            listed = json.loads((self.metadata / f"{bin_version}.{role}.json").read_bytes())["signed"]
            return path in listed["targets"]
        except (FileNotFoundError, ValueError, KeyError):  # a write in progress: poll again
            return False


def count(stack: Stack, query: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(stack.database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(query)).scalar()
    finally:
        engine.dispose()


def pending_changes(stack: Stack) -> int:
    return count(stack, "SELECT count(*) FROM tuf_pending_changes")


def machine() -> dict:
    load = os.getloadavg()
    return {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "loadavg": [round(x, 2) for x in load], "cpus": os.cpu_count()}


def unpack_pristine(source: Path, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-xzf", str(source), "-C", str(into)], check=True)
    tree = into / "warehouse"
    if not (tree / "warehouse" / "config.py").is_file():
        raise SetupError(f"{source}: no warehouse/config.py at warehouse/ in the archive")
    return tree


def listener_times(path: Path) -> list[dict]:
    """The lines ``serve_warehouse_timed.py`` wrote: one per upload request, in request order."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def listener_summary(rows: list[dict]) -> dict:
    """p50/p99/max/mean of the extension's time per upload request (ms), and per listener."""
    values = [row["ms"] for row in rows]
    result = {"n": len(values), "p50_ms": round(percentile(values, 0.50), 3),
              "p99_ms": round(percentile(values, 0.99), 3), "max_ms": round(max(values), 3),
              "mean_ms": round(statistics.fmean(values), 3), "listeners": {}}
    # Every listener, also one that never ran (forget_pending: no upload rolls back).
    for name in sorted(set(LISTENERS) | {name for row in rows for name in row["listeners"]}):
        calls = [row["listeners"].get(name, [0, 0.0])[0] for row in rows]
        times = [row["listeners"].get(name, [0, 0.0])[1] for row in rows]
        result["listeners"][name] = {"calls_per_request_mean": round(statistics.fmean(calls), 2),
                                     "p50_ms": round(percentile(times, 0.50), 3),
                                     "p99_ms": round(percentile(times, 0.99), 3),
                                     "mean_ms": round(statistics.fmean(times), 3)}
    return result


def setup_stack(stack: Stack, *, tuf: bool, log) -> str:
    stack.create_database()
    stack.start_redis()
    stack.start_static()
    stack.warehouse("db", "upgrade", "head")
    if tuf:
        stack.warehouse("tuf", "db", "upgrade")
        payload = stack.ceremony()
        started = time.monotonic()
        log(stack.warehouse("tuf", "bootstrap", str(payload)).stdout.strip().splitlines()[-1]
            + f" ({time.monotonic() - started:.1f}s)")
    token = stack.ops("create-user", "bench", "a benchmark password, not a real one",
                      "bench@example.org")["token"]
    if tuf:  # the extension's listeners under a timer (see the docstring)
        stack.start_web(script="serve_warehouse_timed.py",
                        env={"WAREHOUSE_TUF_LISTENER_TIMES": str(stack.work / "listener-times.jsonl")})
    else:
        stack.start_web()
    stack.start_worker(concurrency=1)  # two Warehouses share two cores
    stack.start_beat()
    return token


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=200, help="measured uploads per side")
    parser.add_argument("--warmup", type=int, default=5, help="uploads per side before measuring")
    parser.add_argument("--latency-uploads", type=int, default=30,
                        help="uploads for the commit-to-signed latency (0: skip)")
    parser.add_argument("--bin-count", type=int, default=16384, help="hash bins of the 'with' side")
    parser.add_argument("--warehouse-src", default=os.environ.get(
        "WAREHOUSE_SRC", str(REPO.parent / "shared" / "warehouse" / "warehouse-280d3b457.tar.gz")),
        help="pristine Warehouse source archive (default $WAREHOUSE_SRC or ../shared/warehouse/...)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON (last line)")
    args = parser.parse_args()

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    try:
        patched, python = warehouse_inputs()
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    source = Path(args.warehouse_src)
    if not source.is_file():
        print(f"error: no pristine Warehouse archive at {source} (set WAREHOUSE_SRC)", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="wh-bench-"))
    stacks: list[Stack] = []
    result: dict = {"machine_before": machine(), "uploads_per_side": args.uploads,
                    "bin_count": args.bin_count, "python": python_version_of(python),
                    "warehouse_tree": str(patched), "pristine_source": str(source)}
    try:
        pristine = unpack_pristine(source, work / "pristine")
        ensure_static_manifests(pristine)
        ensure_static_manifests(patched)
        with_tuf = Stack(patched, python, work / "with", label="with", bin_count=args.bin_count)
        without = Stack(pristine, python, work / "without", label="without")
        stacks += [with_tuf, without]
        log("setting up 'with' (patched tree, extension bootstrapped)")
        token_with = setup_stack(with_tuf, tuf=True, log=log)
        log("setting up 'without' (pristine tree)")
        token_without = setup_stack(without, tuf=False, log=log)
        sides = {"with": Uploader(with_tuf, token_with), "without": Uploader(without, token_without)}

        times: dict[str, list[float]] = {"with": [], "without": []}
        timings_file = with_tuf.work / "listener-times.jsonl"
        total = args.warmup + args.uploads
        log(f"{args.warmup} warm-up then {args.uploads} measured uploads per side, alternating")
        result["machine_start"] = machine()
        started = time.monotonic()
        for i in range(total):
            version = f"1.0.{i}"
            order = ("with", "without") if i % 2 == 0 else ("without", "with")
            for side in order:
                filename, data = make_wheel(version, f"{side}-{i}")
                elapsed = sides[side].upload(version, filename, data)
                if i >= args.warmup:
                    times[side].append(elapsed)
            if (i + 1) % 50 == 0:
                log(f"  {i + 1}/{total}")
        result["alternation_wall_s"] = round(time.monotonic() - started, 1)
        # One line per 'with' upload request, written before its response: warm-up, then measured.
        rows = listener_times(timings_file)
        if len(rows) != total:
            raise AssertionError(f"{timings_file}: {len(rows)} upload requests timed, expected {total}")
        result["extension_in_request"] = listener_summary(rows[args.warmup:])
        result["machine_end"] = machine()
        result["with"] = summary(times["with"])
        result["without"] = summary(times["without"])
        result["ratio_p50"] = round(result["with"]["p50_ms"] / result["without"]["p50_ms"], 3)
        result["ratio_p99"] = round(result["with"]["p99_ms"] / result["without"]["p99_ms"], 3)
        result["ratio_mean"] = round(result["with"]["mean_ms"] / result["without"]["mean_ms"], 3)

        if args.latency_uploads:
            log("waiting for the 'with' side to publish everything pending")
            wait_until(lambda: pending_changes(with_tuf) == 0, 300, "the pending changes to drain", 0.5)
            time.sleep(2)
            watcher = SignedWatcher(with_tuf.public / "metadata")
            latencies, upload_times = [], []
            log(f"{args.latency_uploads} uploads, one at a time: response -> signed")
            for i in range(args.latency_uploads):
                version = f"2.0.{i}"
                filename, data = make_wheel(version, f"latency-{i}")
                path = file_path(filename, data)
                upload_times.append(sides["with"].upload(version, filename, data))
                responded = time.perf_counter()
                deadline = responded + 120
                while not watcher.signed(path):
                    if time.perf_counter() > deadline:
                        raise AssertionError(f"{path} not signed 120 s after its upload:\n"
                                             f"{with_tuf.task_errors()}")
                    time.sleep(0.02)
                latencies.append(time.perf_counter() - responded)
            result["latency"] = {**summary(latencies), "poll_interval_ms": 20,
                                 "upload": summary(upload_times)}
        # The extension was at work on the "with" side: every uploaded file is a signed target.
        wait_until(lambda: pending_changes(with_tuf) == 0, 300, "the pending changes to drain", 0.5)
        result["files_with"] = count(with_tuf, "SELECT count(*) FROM release_files")
        result["files_without"] = count(without, "SELECT count(*) FROM release_files")
        result["targets_signed_with"] = count(
            with_tuf, "SELECT count(*) FROM tuf_targets WHERE kind = 'file'")
        result["machine_after"] = machine()
        for stack in stacks:
            errors = stack.task_errors(limit=1)
            result.setdefault("worker_errors", {})[stack.label] = (
                None if errors == "(no failed task)" else errors.splitlines()[0][:300])
    finally:
        for stack in stacks:
            try:
                stack.close()
            except Exception as exc:  # keep closing the others
                log(f"closing {stack.label}: {exc}")
        if not args.keep:
            subprocess.run(["rm", "-rf", str(work)], check=False)
        else:
            log(f"kept {work}")

    w, wo = result["with"], result["without"]
    print(f"date {result['machine_before']['date']}  loadavg before {result['machine_before']['loadavg']}"
          f"  during {result['machine_end']['loadavg']}  after {result['machine_after']['loadavg']}"
          f"  cpus {result['machine_before']['cpus']}  python {result['python']}")
    print(f"upload request time, {args.uploads} uploads per side, alternating "
          f"({result['alternation_wall_s']} s):")
    for name, row in (("with", w), ("without", wo)):
        print(f"  {name:<8} p50 {row['p50_ms']:8.2f} ms  p99 {row['p99_ms']:8.2f} ms  "
              f"mean {row['mean_ms']:8.2f} ms  max {row['max_ms']:8.2f} ms")
    print(f"  ratio with/without: p50 {result['ratio_p50']}  p99 {result['ratio_p99']}  "
          f"mean {result['ratio_mean']}")
    ext = result["extension_in_request"]
    print(f"  the extension's listeners inside each 'with' upload request ({ext['n']} requests): "
          f"p50 {ext['p50_ms']:.3f} ms  p99 {ext['p99_ms']:.3f} ms  max {ext['max_ms']:.3f} ms  "
          f"mean {ext['mean_ms']:.3f} ms")
    for name, row in ext["listeners"].items():
        print(f"    {name:<20} {row['calls_per_request_mean']:6.2f} calls/request  "
              f"p50 {row['p50_ms']:.3f} ms  p99 {row['p99_ms']:.3f} ms  mean {row['mean_ms']:.3f} ms")
    print(f"files: with {result['files_with']} ({result['targets_signed_with']} signed targets), "
          f"without {result['files_without']}")
    if "latency" in result:
        lat = result["latency"]
        print(f"upload response -> signed ({lat['n']} uploads, {args.bin_count} bins, 20 ms polls): "
              f"p50 {lat['p50_ms']:.0f} ms  p99 {lat['p99_ms']:.0f} ms  max {lat['max_ms']:.0f} ms")
    if args.json:
        print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
