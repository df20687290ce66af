"""``python -m dev ...``: the development host's command line, like ``python -m warehouse``."""

from dev.cli import dev

if __name__ == "__main__":
    dev()
