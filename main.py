"""Start the desktop app: ``python main.py [FOLDER|PROJECT]`` (``--sample`` opens the bundled sample)."""

import sys

from annotator.cli import console_main

if __name__ == "__main__":
    sys.exit(console_main(["gui", *sys.argv[1:]]))
