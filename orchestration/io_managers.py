"""The IO manager of the training lineage: each training asset's value is pickled under
`<data>/assets/<asset key>.pkl` and handed to the assets downstream of it, so the graph carries
the real data flow (labels -> dataset -> models -> evaluation -> champion) instead of each asset
re-reading files by path.

Writes are atomic (temp file + rename): a crashed step never leaves a half-written value for the
next run. Values are core objects (`cryptovol.models.*`), so the files stay readable with plain
`pickle.load` and the cryptovol package, without Dagster.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import dagster as dg

from cryptovol.atomic import write_atomic
from orchestration.resources import LakeResource


class LakePickleIOManager(dg.ConfigurableIOManager):
    """Pickles asset values under the lake's `assets/` folder (see the module docstring)."""

    lake: LakeResource
    folder: str = "assets"

    def _path(self, key: dg.AssetKey) -> Path:
        return self.lake.settings().data_dir / self.folder / ("/".join(key.path) + ".pkl")

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        path = self._path(context.asset_key)
        write_atomic(path, lambda fh: pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL))
        context.add_output_metadata({
            "value_path": dg.MetadataValue.path(str(path.resolve())),
            "value_bytes": dg.MetadataValue.int(path.stat().st_size),
        })

    def load_input(self, context: dg.InputContext) -> Any:
        path = self._path(context.asset_key)
        if not path.exists():
            raise dg.Failure(
                description=f"{context.asset_key.to_user_string()} has no stored value at {path}: "
                "materialize it first"
            )
        with path.open("rb") as fh:
            return pickle.load(fh)
