"""Entry script of the PyInstaller bundle (packaging/annotator.spec).

The bundle has two executables built from this one script: ``annotator`` (the CLI, same
sub-commands and flags as the console script) and ``annotator-gui`` (no console on Windows /
macOS; runs ``annotator gui ARGS``, except for ``--version`` / ``--self-check`` / ``--help``),
so one analysis of torch serves both.
"""

import multiprocessing
import sys
from pathlib import Path

TOP_LEVEL_FLAGS = ("--version", "--self-check", "-h", "--help")

if __name__ == "__main__":
    multiprocessing.freeze_support()  # training runs in a child process
    from annotator.cli import console_main

    argv = sys.argv[1:]
    if Path(sys.executable).stem == "annotator-gui" and not (argv and argv[0] in TOP_LEVEL_FLAGS):
        argv = ["gui", *argv]
    sys.exit(console_main(argv))
