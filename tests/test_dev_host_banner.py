"""The development host's banner names the keys the repository actually trusts."""

from __future__ import annotations

import pytest

from dev.app import configure
from dev.models import Base
from dev.testing.devhost import HTTPClient, start_server, stop
from tests.keyholders import make_holder, run, v1_payload
from warehouse_tuf.migrations import upgrade

pytestmark = pytest.mark.e2e  # starts the development host as a process


def test_a_host_bootstrapped_from_a_ceremony_names_the_ceremony_keys(tmp_path):
    names = ["root1", "root2", "root3", "targets1", "targets2", "online1"]
    holders = {name: make_holder(tmp_path, name) for name in names}
    payload = tmp_path / "payload.json"
    payload.write_bytes(v1_payload(holders).to_bytes())
    data = tmp_path / "data"
    env = {"TUF_DEV_DATA": str(data), "TUF_BIN_COUNT": "16", "TUF_ONLINE_SIGNERS": holders["online1"].uri}
    config = configure({"dev.data": str(data), "tuf.bin_count": 16, "tuf.online_signers": holders["online1"].uri})
    Base.metadata.create_all(config.registry["sqlalchemy.engine"])
    upgrade(config.registry["sqlalchemy.engine"])
    assert run(config, "bootstrap", payload).output.startswith("bootstrapped: root v1, targets v1, 16 bins")

    server, base = start_server(env, log=tmp_path / "serve.log")
    try:
        client = HTTPClient(base)  # a client trusting the served 1.root.json refreshes
        assert client.download("no/such/target.whl") is None and client.timestamp_version() == 1
    finally:
        stop(server)
    banner = (tmp_path / "serve.log").read_text()
    assert "INSECURE" not in banner and "bootstrapped the TUF repository" not in banner, banner
    keys_line = next(line for line in banner.splitlines() if line.startswith("  TUF keys:"))
    online_signer = f"file2:…{str(holders['online1'].private)[-24:]}"
    assert keys_line == f"  TUF keys:  from a signing ceremony (online signer: {online_signer})"
    report = run(config, "status").output.splitlines()
    assert report[0] == "OK" and "keys:        keys from a signing ceremony" in report
