"""`python -m cli`: the `bank` console script, for when it is not on the PATH."""

from cli.main import main

main()
