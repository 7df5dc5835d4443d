"""The offline demo: pieces synthesised in code (``synth``, also the tests' audio) and the
run that predicts them with the shipped model and writes a report (``run``)."""
