"""Serve a Warehouse tree's real WSGI app with waitress on 127.0.0.1.

    python serve_warehouse.py PORT [THREADS]

Run with the Warehouse venv's python, the tree on PYTHONPATH and the
Warehouse environment. The app is ``warehouse.config.configure().make_wsgi_app()``
(what ``warehouse.wsgi:application`` builds), with one setting given to the
Configurator: ``enforce_https = False``, because this server speaks plain HTTP
on the loopback interface (Warehouse's development environment sets the same;
in production the TLS-terminating proxy in front makes requests HTTPS). With
``WAREHOUSE_E2E_UNBUILT_ASSETS`` set, also ``pyramid.prevent_http_cache`` (as
Warehouse's development environment): pages linking the unbuilt static assets render.
"""

from __future__ import annotations

import os
import sys

import waitress
from warehouse.config import configure


def make_app():
    settings = {"enforce_https": False}
    if os.environ.get("WAREHOUSE_E2E_UNBUILT_ASSETS"):
        # Pages that link static assets (the admin's layout) render although the front-end was
        # not built: unknown assets keep their plain paths, as in Warehouse's development setup.
        settings["pyramid.prevent_http_cache"] = True
    return configure(settings=settings).make_wsgi_app()


def serve(app, argv: list[str]) -> None:
    port = int(argv[1])
    threads = int(argv[2]) if len(argv) > 2 else 4
    waitress.serve(app, host="127.0.0.1", port=port, threads=threads, ident="warehouse",
                   clear_untrusted_proxy_headers=True, _quiet=False)


def main() -> None:
    serve(make_app(), sys.argv)


if __name__ == "__main__":
    main()
