"""python-tuf's ngclient as a command: verify targets of a served TUF repository.

Run with a python that has ``tuf`` (the project's own venv: Warehouse pins
urllib3<2, which ngclient does not import with)::

    python tuf_client.py '<spec JSON>'

spec: {"metadata_url": ..., "root": "<trusted 1.root.json path>", "cache": "<dir>",
       "targets": [{"path": ..., "base_url": ..., "prefix": true|false}, ...]}

Prints one JSON line: [{"path", "found", "length", "sha256", "timestamp"}, ...].
A verification failure (refresh, or a downloaded target whose length or hash
differs from the signed one) prints ``{"error": "<exception class>", "message": ...}``
and exits 1. The cache directory keeps trusted metadata between calls, as a
real client's does, so rollbacks across calls are detected too.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

from tuf.ngclient import Updater, UpdaterConfig


def main(spec: dict) -> list[dict]:
    cache = Path(spec["cache"])
    metadata_dir = cache / "metadata"
    metadata_dir.mkdir(parents=True, exist_ok=True)
    bootstrap = None if (metadata_dir / "root.json").exists() else Path(spec["root"]).read_bytes()
    results = []
    for index, target in enumerate(spec["targets"]):
        downloads = cache / f"downloads-{index}"
        shutil.rmtree(downloads, ignore_errors=True)
        downloads.mkdir(parents=True)
        updater = Updater(
            metadata_dir=str(metadata_dir), metadata_base_url=spec["metadata_url"],
            target_dir=str(downloads), target_base_url=target["base_url"],
            config=UpdaterConfig(prefix_targets_with_hash=target["prefix"]), bootstrap=bootstrap,
        )
        bootstrap = None
        updater.refresh()
        timestamp = json.loads((metadata_dir / "timestamp.json").read_bytes())["signed"]["version"]
        info = updater.get_targetinfo(target["path"])
        if info is None:
            results.append({"path": target["path"], "found": False, "timestamp": timestamp})
            continue
        data = Path(updater.download_target(info, filepath=str(downloads / "target"))).read_bytes()
        results.append({"path": target["path"], "found": True, "length": len(data),
                        "sha256": hashlib.sha256(data).hexdigest(), "timestamp": timestamp})
    return results


if __name__ == "__main__":
    try:
        print(json.dumps(main(json.loads(sys.argv[1]))))
    except Exception as exc:  # reported to the test, which decides
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        sys.exit(1)
