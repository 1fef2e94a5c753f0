"""`cryptovol demo`: start, watch and stop the whole platform on one machine (`launcher.py`),
bootstrap the first champion (`bootstrap.py`), and print a live status line (`status.py`)."""
