"""`python -m moodscope` runs the command line."""

from moodscope.cli.main import main

main()
