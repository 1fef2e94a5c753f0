"""The offline exchange: a seeded market process, a Coinbase Advanced Trade protocol server, and
synthetic landing files / tick frames made by the same process.

Import the server from `cryptovol.simulator.server` (it pulls in `websockets`); the process and
the generators are plain numpy/pandas.
"""

from cryptovol.simulator.price_process import MarketEvent, MarketSimulator, ProductParams, ProductState
from cryptovol.simulator.synthetic import generate_landing_files, generate_ticks_frame

__all__ = [
    "MarketEvent",
    "MarketSimulator",
    "ProductParams",
    "ProductState",
    "generate_landing_files",
    "generate_ticks_frame",
]
