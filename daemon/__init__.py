"""The daemon runs the pipeline: scheduling, syncing, the database and the ``itbsc`` CLI."""
