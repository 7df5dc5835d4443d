"""`python -m moodscope` runs the command line."""

from .cli import main

main()
