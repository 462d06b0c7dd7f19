"""`python server.py [options]` is `mirage serve [options]`."""

import sys

from mirage.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
