"""Long-running jobs the CLI and the GUI worker run: pre-labelling (:mod:`annotator.jobs.prelabel`)."""
