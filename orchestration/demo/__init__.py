"""`cryptovol demo`'s launcher (it starts `dagster dev` and drives it through GraphQL, so it lives
beside the Dagster code, not in the core): `launcher.py` starts, watches and stops every process;
`first_champion.py` materializes the lineage graph for the first champion; `python -m
orchestration.demo` is what `cryptovol demo` executes."""
