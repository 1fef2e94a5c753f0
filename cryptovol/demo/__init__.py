"""Core pieces of `cryptovol demo`: the history the live simulator continues (`history.py`) and the
live status line (`status.py`). The launcher that starts Dagster and the other processes lives
next to the Dagster code (`orchestration/demo/`); `cryptovol demo` runs it as a process."""
