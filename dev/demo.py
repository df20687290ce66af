"""``python -m dev demo-dist NAME VERSION``: a tiny project's sdist and wheel to upload.

The README's tour and the end-to-end tests upload these (``python -m build``,
no network: setuptools and wheel come from the development environment).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click

from dev.cli import dev


def build_dists(workdir: Path, name: str, version: str, out: Path | None = None) -> list[Path]:
    """A real sdist and wheel of a tiny generated project, in ``out`` (default ``workdir/<name>-dist``)."""
    module = name.replace("-", "_").replace(".", "_")
    project = workdir / f"{name}-{version}-src"
    (project / module).mkdir(parents=True)
    (project / module / "__init__.py").write_text(f'VERSION = "{version}"\n')
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61", "wheel"]\n'
        'build-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{name}"\nversion = "{version}"\nrequires-python = ">=3.8"\n'
        f'description = "a package for the warehouse-tuf end-to-end tests"\n'
    )
    out = out or workdir / f"{name}-dist"
    out.mkdir(parents=True, exist_ok=True)
    before = set(out.iterdir())
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel",
                    "--outdir", str(out), str(project)], check=True, capture_output=True, timeout=300)
    dists = sorted(set(out.iterdir()) - before)
    assert [d.suffix for d in dists] == [".gz", ".whl"], dists
    return dists


@dev.command("demo-dist")
@click.argument("name")
@click.argument("version")
@click.option("-o", "--outdir", type=click.Path(file_okay=False, path_type=Path), default=Path("dist"),
              show_default=True)
def demo_dist(name: str, version: str, outdir: Path) -> None:
    """Build a tiny project NAME VERSION (sdist and wheel) into OUTDIR, to upload."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="demo-dist-") as work:
        try:
            dists = build_dists(Path(work), name, version, outdir.resolve())
        except subprocess.CalledProcessError as exc:
            raise click.ClickException(f"building {name} {version} failed: "
                                       f"{exc.stderr.decode(errors='replace').strip().splitlines()[-1:]}") from None
    for dist in dists:
        click.echo(str(dist))
