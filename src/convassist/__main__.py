"""`python -m convassist`."""

from convassist.cli.main import app

app(prog_name="convassist")
