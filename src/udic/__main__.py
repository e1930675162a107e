"""``python -m udic`` is the ``udic`` command."""

from .cli import run

if __name__ == "__main__":
    run()
