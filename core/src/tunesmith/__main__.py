"""``python -m tunesmith``: what torchrun launches on each process."""

from tunesmith.cli import main

main()
