"""Whether schedules and sensors start switched on (CRYPTOVOL_DAGSTER_AUTOMATION=on|off)."""

from __future__ import annotations

import os

import dagster as dg

from cryptovol.config import load_env


def automation_enabled() -> bool:
    return load_env().dagster_automation


def sensor_status() -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if automation_enabled() else dg.DefaultSensorStatus.STOPPED


def schedule_status() -> dg.DefaultScheduleStatus:
    return dg.DefaultScheduleStatus.RUNNING if automation_enabled() else dg.DefaultScheduleStatus.STOPPED


def env_int(name: str, default: int) -> int:
    """A validated integer variable (cryptovol.config.PlatformEnv); `default` when it is unset."""
    value = os.environ.get(name, "").strip() and load_env().value_of(name)
    return int(value) if value else default
