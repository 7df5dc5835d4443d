"""`python -m moodscope` runs the command line."""

from moodscope.cli.commands import main

main()
