"""Whether schedules and sensors start switched on (CRYPTOVOL_DAGSTER_AUTOMATION=on|off)."""

from __future__ import annotations

import os

import dagster as dg


def automation_enabled() -> bool:
    value = os.environ.get("CRYPTOVOL_DAGSTER_AUTOMATION", "on").strip().lower()
    return value not in ("0", "off", "false", "no")


def sensor_status() -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if automation_enabled() else dg.DefaultSensorStatus.STOPPED


def schedule_status() -> dg.DefaultScheduleStatus:
    return dg.DefaultScheduleStatus.RUNNING if automation_enabled() else dg.DefaultScheduleStatus.STOPPED


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default
