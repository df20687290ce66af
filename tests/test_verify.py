"""``tuf verify``: an outsider's audit over HTTP, on a healthy and on damaged repositories."""

from __future__ import annotations

import datetime
import functools
import http.server
import json
import threading

import pytest
from tuf.api.metadata import Metadata

from tests.conftest import BOTH_TRUST_MODELS, both_trust_models
from tests.keyholders import run
from tests.test_services import publish_file
from warehouse_tuf.signing import load_key_file
from warehouse_tuf.verify import audit

targets_online = pytest.fixture(**BOTH_TRUST_MODELS)(both_trust_models)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def served(tmp_path):
    """tmp_path served over HTTP on 127.0.0.1; yields the base URL."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(tmp_path))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def published(repo, db, tmp_path):
    """A bootstrapped repository with a few published files; returns their target paths."""
    paths = [
        publish_file(repo, tmp_path / "packages", f"pkg{i}-1.0.tar.gz", f"package {i}".encode())
        for i in range(6)
    ]
    db.commit()
    repo.publish()
    return paths


def current(metadata_dir, role: str) -> tuple[int, Metadata]:
    timestamp = json.loads((metadata_dir / "timestamp.json").read_bytes())
    snapshot_version = timestamp["signed"]["meta"]["snapshot.json"]["version"]
    snapshot = Metadata.from_bytes((metadata_dir / f"{snapshot_version}.snapshot.json").read_bytes())
    version = snapshot.signed.meta[f"{role}.json"].version
    return version, Metadata.from_bytes((metadata_dir / f"{version}.{role}.json").read_bytes())


def bin_with_targets(metadata_dir, paths, settings) -> str:
    from warehouse_tuf import targets as targetlib

    index = targetlib.bin_index(paths[0], settings.bin_bits)
    return targetlib.bin_name(index, settings.bin_bits, settings.bin_name_prefix)


def online_signer(settings):
    from pathlib import Path

    return load_key_file(Path(settings.dev_keys_path) / "online.pem")


def check(served, **kw):
    return audit(f"{served}/metadata", targets_url=f"{served}/packages", sample=100, **kw)


def test_healthy_repository_passes(published, served, metadata_dir, targets_online):
    report = check(served)
    assert report.problems == []
    assert report.trust_model == ("targets-online" if targets_online else "pep458")
    assert report.bins_checked == 16 and report.targets_sampled == len(published)
    # The CLI, with a trusted root instead of trust on first use.
    result = run(None, "verify", f"{served}/metadata", "--root", metadata_dir / "1.root.json",
                 "--targets-url", f"{served}/packages")
    assert "ok: timestamp 2, snapshot 2, 16 bins checked, 6 of 6 files and 0 of 0 pages checked" in result.output
    if targets_online:
        assert "trust model: targets online: root is the only offline role" in result.output
        assert "warning: a compromised online key also compromises targets" in result.output
    else:
        assert "trust model: PEP 458: root and targets are offline roles" in result.output


def test_files_are_sampled_by_default_from_the_derived_url_and_counted_exactly(published, served):
    # No --targets-url: files are fetched from /packages/ on the metadata URL's host.
    result = run(None, "verify", f"{served}/metadata", "--sample", 4)
    assert result.output.strip().endswith("16 bins checked, 4 of 6 files and 0 of 0 pages checked")
    result = run(None, "verify", f"{served}/metadata", "--sample", 50)
    assert result.output.strip().endswith("6 of 6 files and 0 of 0 pages checked")
    # Configured elsewhere: nothing is served there, and every sampled file is a problem.
    result = run(None, "verify", f"{served}/metadata", "--sample", 2, "--targets-url", f"{served}/elsewhere",
                 ok=False)
    assert result.output.count("problem: target ") == 2 and "2 of 6 files" in result.stderr


def test_a_server_that_is_down_is_one_plain_sentence(tmp_path):
    from dev.testing.devhost import free_port

    url = f"http://127.0.0.1:{free_port()}/metadata/"
    result = run(None, "verify", url, ok=False)
    assert result.exit_code == 2
    assert result.output == (f"error: cannot reach http://127.0.0.1:{url.split(':')[2].split('/')[0]} "
                             "(Connection refused): is the server running, and is the URL right?\n")


def test_missing_bin_file_is_named(published, served, metadata_dir, settings):
    name = bin_with_targets(metadata_dir, published, settings)
    version, _ = current(metadata_dir, name)
    (metadata_dir / f"{version}.{name}.json").unlink()
    result = run(None, "verify", f"{served}/metadata", ok=False)
    assert f"problem: {name}: {version}.{name}.json is missing (snapshot lists version {version})" in result.output


def test_bin_rewritten_under_the_same_version_is_caught(published, served, metadata_dir, settings, tmp_path):
    name = bin_with_targets(metadata_dir, published, settings)
    version, bin_md = current(metadata_dir, name)
    state = tmp_path / "audit-state.json"
    assert check(served, state_file=state).ok

    # Edited in place: the signature no longer verifies.
    path = metadata_dir / f"{version}.{name}.json"
    original = path.read_bytes()
    obj = json.loads(original)
    next(iter(obj["signed"]["targets"].values()))["length"] += 1
    path.write_bytes(json.dumps(obj).encode())
    problems = check(served).problems
    assert any(p.startswith(f"{name}: {version}.{name}.json is signed by 0 of the 1") for p in problems), problems

    # Re-signed with the online key itself (a buggy or hijacked publisher): the state file remembers.
    bin_md.signed.targets.popitem()
    bin_md.sign(online_signer(settings))
    path.write_bytes(bin_md.to_bytes())
    problems = check(served, state_file=state).problems
    assert f"{name}: version {version} now has other bytes than an earlier audit saw" in problems


def test_expired_timestamp_is_named(published, served, metadata_dir, settings):
    timestamp = Metadata.from_bytes((metadata_dir / "timestamp.json").read_bytes())
    timestamp.signed.expires = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    timestamp.sign(online_signer(settings))
    (metadata_dir / "timestamp.json").write_bytes(timestamp.to_bytes())
    result = run(None, "verify", f"{served}/metadata", ok=False)
    assert "problem: a client cannot refresh: ExpiredMetadataError: timestamp.json is expired" in result.output


def test_target_whose_bytes_do_not_match_is_named(published, served, tmp_path):
    served_file = tmp_path / "packages" / published[3]
    served_file.write_bytes(b"tampered!")
    problems = check(served).problems
    assert len(problems) == 1 and problems[0].startswith(f"target {published[3]}: LengthOrHashMismatchError"), problems


def test_simple_pages_are_sampled_under_their_hash_prefixed_names(db, settings, tmp_path, served):
    from warehouse_tuf.services import TUFManager
    from warehouse_tuf.storage import LocalStorage
    from warehouse_tuf.targets import SimplePages

    def render(request, project):
        return SimplePages(html=f"<html>{project}</html>".encode(), json=f'{{"name": "{project}"}}'.encode())

    repo = TUFManager(db, settings, LocalStorage(tmp_path / "metadata"), LocalStorage(tmp_path / "simple"),
                      renderer=render)
    repo.bootstrap_development()
    for project in ("alpha", "beta"):
        repo.record_pages_changed(project)
    db.commit()
    repo.publish()
    report = audit(f"{served}/metadata", simple_url=f"{served}/simple", sample=10)
    assert report.problems == [] and report.targets_sampled == 4
    page = next((tmp_path / "simple" / "beta").glob("*.beta.json"))
    page.write_bytes(b'{"name": "evil"}')
    problems = audit(f"{served}/metadata", simple_url=f"{served}/simple", sample=10).problems
    assert len(problems) == 1 and problems[0].startswith("target beta/beta.json:"), problems
