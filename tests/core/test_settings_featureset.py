from __future__ import annotations

import pytest

from cryptovol.config import Settings, env_flag, parse_products
from cryptovol.featureset import FEATURE_SET, FeatureSchemaError


def test_settings_defaults_and_env(monkeypatch, tmp_path):
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("CRYPTOVOL_PRODUCTS", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("CRYPTOVOL_DATA_DIR", str(tmp_path))
    settings = Settings.from_env()
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert settings.products == ("BTC-USD", "ETH-USD")
    assert settings.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    assert settings.raw_dir == tmp_path / "raw"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "redpanda:9092")
    monkeypatch.setenv("CRYPTOVOL_PRODUCTS", "sol-usd, BTC-USD")
    settings = Settings.from_env()
    assert settings.bootstrap_servers == "redpanda:9092"
    assert settings.products == ("SOL-USD", "BTC-USD")


def test_empty_product_list_is_an_error():
    with pytest.raises(ValueError, match="no products"):
        parse_products(" , ")


def test_feature_set_names_missing_and_extra_columns():
    columns = [c for c in FEATURE_SET.columns if c != "rv_60s"] + ["surprise"]
    with pytest.raises(FeatureSchemaError) as info:
        FEATURE_SET.validate_columns(columns, exact=True)
    assert "rv_60s" in str(info.value) and "surprise" in str(info.value)
    FEATURE_SET.validate_columns(FEATURE_SET.columns, exact=True)
    with pytest.raises(FeatureSchemaError, match="version mismatch"):
        FEATURE_SET.check_version("0.0.1")


@pytest.mark.parametrize(("value", "expected"), [
    ("", True), ("1", True), ("true", True), (" YES ", True), ("on", True),
    ("0", False), ("False", False), ("no", False), ("off", False),
])
def test_env_flag_reads_on_off_words_and_keeps_the_default_when_unset(monkeypatch, value, expected):
    monkeypatch.setenv("CRYPTOVOL_SOME_SWITCH", value)
    assert env_flag("CRYPTOVOL_SOME_SWITCH", True) is expected
    monkeypatch.delenv("CRYPTOVOL_SOME_SWITCH")
    assert env_flag("CRYPTOVOL_SOME_SWITCH", False) is False


def test_env_flag_rejects_a_typo_naming_the_variable(monkeypatch):
    monkeypatch.setenv("KAFKA_ENABLE_IDEMPOTENCE", "ture")
    with pytest.raises(ValueError, match=r"KAFKA_ENABLE_IDEMPOTENCE='ture'"):
        env_flag("KAFKA_ENABLE_IDEMPOTENCE", False)
