"""``python -m asyncvideos``: the command line."""

from asyncvideos._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
