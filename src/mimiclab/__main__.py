"""`python -m mimiclab ...`: the same as the `mimiclab` command."""

from mimiclab.cli import main

if __name__ == "__main__":
    main()
