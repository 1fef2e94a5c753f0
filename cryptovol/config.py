"""Settings read from the environment, with defaults that work on one laptop.

Every process (ingestor, featurizer, scorer, Dagster, BentoML) reads the same variables, so
pointing the whole platform at Redpanda or a remote MLflow is a matter of exporting them.

Configuration is input too: `PlatformEnv` declares every variable the platform reads, with its
type, bounds and accepted form, and `load_env()` validates all of them at once. A bad value stops
the process with a message naming the variable and what it accepts (`ConfigError`), instead of a
traceback deep inside a consumer hours later or a typo silently meaning the default.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_PRODUCTS = ("BTC-USD", "ETH-USD")
COINBASE_WS_URL = "wss://advanced-trade-ws.coinbase.com"

TOPIC_RAW = "ticks.raw"
TOPIC_FEATURES = "ticks.features"
TOPIC_PREDICTIONS = "predictions"
TOPIC_DEADLETTER = "ticks.deadletter"
ALL_TOPICS = (TOPIC_RAW, TOPIC_FEATURES, TOPIC_PREDICTIONS, TOPIC_DEADLETTER)

#: `cryptovol compact` and the Dagster job merge parts this much older than a product's newest.
COMPACT_OLDER_THAN_S = 3600.0

#: Ticks whose event time is further than this from the receive time are dead-lettered
#: (CRYPTOVOL_TICK_MAX_AHEAD_S / CRYPTOVOL_TICK_MAX_BEHIND_S).
TICK_MAX_AHEAD_S = 60.0
TICK_MAX_BEHIND_S = 86400.0
#: Landing NDJSON and the spool cursor are fsynced at least this often (CRYPTOVOL_FSYNC_INTERVAL_S).
FSYNC_INTERVAL_S = 1.0

#: A product id as configured (`CRYPTOVOL_PRODUCTS`) and as served: Coinbase style BASE-QUOTE,
#: upper-case letters and digits only, so it is always safe as a path component.
PRODUCT_ID_MAX_LEN = 32
PRODUCT_ID_PATTERN = r"^[A-Z0-9]{1,15}-[A-Z0-9]{1,15}$"
PRODUCT_ID_RE = re.compile(PRODUCT_ID_PATTERN)


def valid_product_id(text: object) -> bool:
    """True for an id such as `BTC-USD`: <= PRODUCT_ID_MAX_LEN characters, BASE-QUOTE, A-Z0-9.

    Any other value (None, a number, a list: whatever a message held) is simply not valid.
    """
    if not isinstance(text, str):
        return False
    return len(text) <= PRODUCT_ID_MAX_LEN and PRODUCT_ID_RE.fullmatch(text) is not None


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
FLAG_FORM = "one of 1/true/yes/on or 0/false/no/off"


def parse_flag(value: Any) -> bool:
    """1/true/yes/on -> True, 0/false/no/off -> False (any case); anything else is an error."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"expected {FLAG_FORM}")


def env_flag(name: str, default: bool) -> bool:
    """An on/off switch from the environment: 1/true/yes/on or 0/false/no/off (any case).

    Unset or empty keeps `default`. Anything else is an error naming the variable, so a typo such as
    `KAFKA_ENABLE_IDEMPOTENCE=ture` stops the process instead of silently meaning "off".
    """
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return parse_flag(value)
    except ValueError:
        raise ValueError(f"{name}={os.environ[name]!r}: expected {FLAG_FORM}") from None


def parse_products(text: str) -> tuple[str, ...]:
    """`"BTC-USD, eth-usd"` -> `("BTC-USD", "ETH-USD")`; rejects an empty list and malformed ids."""
    products = tuple(p.strip().upper() for p in text.split(",") if p.strip())
    if not products:
        raise ValueError(f"no products in {text!r}; expected e.g. 'BTC-USD,ETH-USD'")
    bad = [p for p in products if not valid_product_id(p)]
    if bad:
        raise ValueError(
            f"bad product id(s) {bad!r}: expected BASE-QUOTE of letters and digits, e.g. BTC-USD"
        )
    return products


# --- validators for the variables' accepted forms -------------------------------------------------

_HOST_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


def _check_host(host: str) -> str:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return host
    except ValueError:
        pass
    if not _HOST_RE.fullmatch(host):
        raise ValueError("not an IP address or host name")
    return host


def _check_bootstrap(text: str) -> str:
    for server in text.split(","):
        host, sep, port = server.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError("expected host:port[,host:port...]")
        _check_host(host)
    return text


def _check_http_url(text: str) -> str:
    if not re.fullmatch(r"https?://[^\s/?#@]+(:\d{1,5})?([/?#]\S*)?", text, flags=re.IGNORECASE):
        raise ValueError("expected an http:// or https:// URL")
    return text


def _check_secret_url(secret: SecretStr) -> SecretStr:
    _check_http_url(secret.get_secret_value())
    return secret


def _check_dir_path(path: Path) -> Path:
    if "\0" in str(path):
        raise ValueError("contains a NUL byte")
    resolved = path.expanduser().resolve()
    if resolved.exists() and not resolved.is_dir():
        raise ValueError("exists and is not a directory")
    return resolved


def _check_file(path: Path) -> Path:
    if not path.is_file() or not os.access(path, os.R_OK):
        raise ValueError("no such readable file")
    return path


def _check_executable(path: Path) -> Path:
    if not path.is_file() or not os.access(path, os.X_OK):
        raise ValueError("no such executable file")
    return path


def _check_cron(text: str) -> str:
    fields = text.split()
    if len(fields) != 5 or not all(re.fullmatch(r"[0-9A-Za-z*/,-]+", f) for f in fields):
        raise ValueError("expected a 5-field cron expression")
    return text


def _check_model_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,127}", text):
        raise ValueError("expected 1-128 letters, digits, '.', '_', '-' or spaces")
    return text


def _check_products(text: str) -> str:
    parse_products(text)
    return text


def _check_date(text: str) -> str:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError("expected a date YYYY-MM-DD") from None
    if len(text) != 10:
        raise ValueError("expected a date YYYY-MM-DD")
    return text


def _check_uri(text: str) -> str:
    if any(c in text for c in "\0\n\r") or (
        "://" in text and not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", text.split("://", 1)[0])
    ):
        raise ValueError("expected a URI")
    return text


Flag = Annotated[bool, BeforeValidator(parse_flag)]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"]


def _var(name: str, default: Any, form: str, **bounds: Any) -> Any:
    """A field read from the environment variable `name`; `form` is what it accepts (for errors)."""
    return Field(default, alias=name, description=form, **bounds)


class PlatformEnv(BaseSettings):
    """Every environment variable the platform reads, typed and bounded (see README, Configuration).

    Unset or empty (or blank) means the default. Build it with `load_env()`, which turns a
    validation failure into a `ConfigError` naming each bad variable and its accepted form.
    """

    model_config = SettingsConfigDict(
        case_sensitive=True, extra="ignore", frozen=True, populate_by_name=False
    )

    # Where things are.
    bootstrap_servers: Annotated[str, AfterValidator(_check_bootstrap)] = _var(
        "KAFKA_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP, "host:port[,host:port...], e.g. 127.0.0.1:9092")
    data_dir: Annotated[Path, AfterValidator(_check_dir_path)] = _var(
        "CRYPTOVOL_DATA_DIR", Path("data"), "a directory path (created if missing)")
    products: Annotated[str, AfterValidator(_check_products)] = _var(
        "CRYPTOVOL_PRODUCTS", ",".join(DEFAULT_PRODUCTS), "comma-separated product ids, e.g. BTC-USD,ETH-USD")
    topic_partitions: int = _var("CRYPTOVOL_TOPIC_PARTITIONS", 3, "an integer from 1 to 1024", ge=1, le=1024)
    mlflow_tracking_uri: Annotated[str, AfterValidator(_check_uri)] | None = _var(
        "MLFLOW_TRACKING_URI", None, "an MLflow tracking URI, e.g. sqlite:///path/mlflow.db or http://host:5000")
    model_name: Annotated[str, AfterValidator(_check_model_name)] = _var(
        "CRYPTOVOL_MODEL_NAME", "cryptovol-spike", "a model name: 1-128 letters, digits, . _ - or space")
    experiment: Annotated[str, AfterValidator(_check_model_name)] = _var(
        "CRYPTOVOL_EXPERIMENT", "cryptovol-spike",
        "an experiment name: 1-128 letters, digits, . _ - or space"
    )
    broker_bin: Annotated[Path, AfterValidator(_check_executable)] | None = _var(
        "CRYPTOVOL_BROKER_BIN", None, "the path of an executable Tansu binary")
    metrics_bind_address: Annotated[str, AfterValidator(_check_host)] = _var(
        "CRYPTOVOL_METRICS_BIND_ADDRESS", "127.0.0.1",
        "an IP address or host name for the metrics servers, e.g. 127.0.0.1 or 0.0.0.0")

    # Kafka client.
    kafka_enable_idempotence: Flag = _var("KAFKA_ENABLE_IDEMPOTENCE", False, FLAG_FORM)
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] | None = _var(
        "KAFKA_SECURITY_PROTOCOL", None, "one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL")
    kafka_sasl_mechanism: SaslMechanism | None = _var(
        "KAFKA_SASL_MECHANISM", None, "one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER, GSSAPI")
    kafka_sasl_username: str | None = _var("KAFKA_SASL_USERNAME", None, "a user name")
    kafka_sasl_password: SecretStr | None = _var("KAFKA_SASL_PASSWORD", None, "a password")
    kafka_ssl_cafile: Annotated[Path, AfterValidator(_check_file)] | None = _var(
        "KAFKA_SSL_CAFILE", None, "the path of a readable PEM file")
    kafka_ssl_certfile: Annotated[Path, AfterValidator(_check_file)] | None = _var(
        "KAFKA_SSL_CERTFILE", None, "the path of a readable PEM file")
    kafka_ssl_keyfile: Annotated[Path, AfterValidator(_check_file)] | None = _var(
        "KAFKA_SSL_KEYFILE", None, "the path of a readable PEM file")

    # Ingest and consumers.
    tick_max_ahead_s: float = _var(
        "CRYPTOVOL_TICK_MAX_AHEAD_S", TICK_MAX_AHEAD_S, "seconds, a number in (0, 86400]", gt=0, le=86400)
    tick_max_behind_s: float = _var(
        "CRYPTOVOL_TICK_MAX_BEHIND_S", TICK_MAX_BEHIND_S, "seconds, a number in (0, 31536000]",
        gt=0, le=365 * 86400)
    fsync_interval_s: float = _var(
        "CRYPTOVOL_FSYNC_INTERVAL_S", FSYNC_INTERVAL_S, "seconds, a number in (0, 3600]", gt=0, le=3600)

    # Retraining policy.
    drift_min_share: float = _var("CRYPTOVOL_DRIFT_MIN_SHARE", 0.5, "a number in (0, 1]", gt=0, le=1)
    drift_persistence: int = _var(
        "CRYPTOVOL_DRIFT_PERSISTENCE", 2, "an integer from 1 to 1000", ge=1, le=1000)
    retrain_cooldown_s: float = _var(
        "CRYPTOVOL_RETRAIN_COOLDOWN_S", 6 * 3600.0, "seconds, a number from 0 to 2592000",
        ge=0, le=30 * 86400)
    drift_calm_share: float | None = _var(
        "CRYPTOVOL_DRIFT_CALM_SHARE", None, "a number in [0, 1]", ge=0, le=1)

    # Serving (bento/service.py, cryptovol.serving).
    max_batch: int = _var("CRYPTOVOL_MAX_BATCH", 10_000, "an integer from 1 to 1000000", ge=1, le=1_000_000)
    max_ticks: int = _var("CRYPTOVOL_MAX_TICKS", 50_000, "an integer from 1 to 1000000", ge=1, le=1_000_000)
    max_body_bytes: int = _var(
        "CRYPTOVOL_MAX_BODY_BYTES", 16 * 1024 * 1024, "bytes, an integer from 1024 to 1073741824",
        ge=1024, le=1024**3)
    max_concurrency: int = _var(
        "CRYPTOVOL_MAX_CONCURRENCY", 32, "an integer from 1 to 10000", ge=1, le=10_000)
    model_poll_s: float = _var(
        "CRYPTOVOL_MODEL_POLL_S", 10.0, "seconds, a number in (0, 86400]", gt=0, le=86400)
    adaptive_batching: Flag = _var("CRYPTOVOL_ADAPTIVE_BATCHING", True, FLAG_FORM)
    batch_max_latency_ms: int = _var(
        "CRYPTOVOL_BATCH_MAX_LATENCY_MS", 5000, "milliseconds, an integer from 1 to 600000", ge=1, le=600_000)
    service_workers: int = _var("CRYPTOVOL_SERVICE_WORKERS", 1, "an integer from 1 to 64", ge=1, le=64)
    access_log: Flag = _var("CRYPTOVOL_ACCESS_LOG", True, FLAG_FORM)
    gc_freeze: Flag = _var("CRYPTOVOL_GC_FREEZE", True, FLAG_FORM)
    trace_predictions: Flag = _var("CRYPTOVOL_TRACE_PREDICTIONS", False, FLAG_FORM)
    api_token: SecretStr | None = _var("CRYPTOVOL_API_TOKEN", None, "a bearer token")
    shadow: Flag = _var("CRYPTOVOL_SHADOW", False, FLAG_FORM + " (load models:/<name>@challenger too)")

    # Alerts.
    alert_webhook_url: Annotated[SecretStr, AfterValidator(_check_secret_url)] | None = _var(
        "CRYPTOVOL_ALERT_WEBHOOK_URL", None, "an http:// or https:// URL")
    alert_retries: int = _var("CRYPTOVOL_ALERT_RETRIES", 3, "an integer from 0 to 10", ge=0, le=10)
    alert_backoff_s: float = _var(
        "CRYPTOVOL_ALERT_BACKOFF_S", 0.5, "seconds, a number from 0 to 60", ge=0, le=60)
    alert_timeout_s: float = _var(
        "CRYPTOVOL_ALERT_TIMEOUT_S", 15.0, "seconds, a number in (0, 300]: total per alert, retries included",
        gt=0, le=300)

    # Dagster (orchestration/, assets/, sensors/).
    dagster_automation: Flag = _var("CRYPTOVOL_DAGSTER_AUTOMATION", True, FLAG_FORM)
    start_date: Annotated[str, AfterValidator(_check_date)] = _var(
        "CRYPTOVOL_START_DATE", "2025-11-01", "a date YYYY-MM-DD")
    freshness_max_age_s: float = _var(
        "CRYPTOVOL_FRESHNESS_MAX_AGE_S", 7200.0, "seconds, a number in (0, 2592000]", gt=0, le=30 * 86400)
    nightly_features_cron: Annotated[str, AfterValidator(_check_cron)] | None = _var(
        "CRYPTOVOL_NIGHTLY_FEATURES_CRON", None, "a 5-field cron expression, e.g. '15 0 * * *'")
    nightly_retrain_cron: Annotated[str, AfterValidator(_check_cron)] | None = _var(
        "CRYPTOVOL_NIGHTLY_RETRAIN_CRON", None, "a 5-field cron expression, e.g. '0 1 * * *'")
    drift_cron: Annotated[str, AfterValidator(_check_cron)] | None = _var(
        "CRYPTOVOL_DRIFT_CRON", None, "a 5-field cron expression, e.g. '*/30 * * * *'")
    freshness_cron: Annotated[str, AfterValidator(_check_cron)] | None = _var(
        "CRYPTOVOL_FRESHNESS_CRON", None, "a 5-field cron expression, e.g. '*/15 * * * *'")
    compact_cron: Annotated[str, AfterValidator(_check_cron)] | None = _var(
        "CRYPTOVOL_COMPACT_CRON", None, "a 5-field cron expression, e.g. '20 * * * *'")
    landing_sensor_interval_s: int = _var(
        "CRYPTOVOL_LANDING_SENSOR_INTERVAL_S", 300, "seconds, an integer from 1 to 86400", ge=1, le=86400)
    drift_sensor_interval_s: int = _var(
        "CRYPTOVOL_DRIFT_SENSOR_INTERVAL_S", 60, "seconds, an integer from 1 to 86400", ge=1, le=86400)
    alert_sensor_interval_s: int = _var(
        "CRYPTOVOL_ALERT_SENSOR_INTERVAL_S", 30, "seconds, an integer from 1 to 86400", ge=1, le=86400)
    duckdb_path: str = _var("CRYPTOVOL_DUCKDB_PATH", ":memory:", "a DuckDB file path or :memory:")
    mlflow_ui_url: Annotated[str, AfterValidator(_check_http_url)] = _var(
        "CRYPTOVOL_MLFLOW_UI_URL", "http://127.0.0.1:5000", "an http:// or https:// URL")

    @model_validator(mode="before")
    @classmethod
    def _blank_means_default(cls, data: Any) -> Any:
        """Strip values; an empty or blank variable means "unset" (the platform's convention)."""
        if isinstance(data, dict):
            return {k: v.strip() if isinstance(v, str) else v for k, v in data.items()
                    if not (isinstance(v, str) and not v.strip())}
        return data

    @property
    def product_ids(self) -> tuple[str, ...]:
        return parse_products(self.products)

    def value_of(self, variable: str) -> Any:
        """The validated value of an environment variable by its name, e.g. `"CRYPTOVOL_DRIFT_CRON"`."""
        for name, info in type(self).model_fields.items():
            if info.alias == variable:
                return getattr(self, name)
        raise KeyError(f"{variable} is not a cryptovol variable (cryptovol.config.PlatformEnv)")

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Variable name -> accepted form, for documentation and error messages."""
        return {f.alias: f.description or "" for f in cls.model_fields.values() if f.alias}


#: Variables whose value is a secret: an error about them never repeats the value.
SECRET_VARIABLES = frozenset({"KAFKA_SASL_PASSWORD", "CRYPTOVOL_API_TOKEN", "CRYPTOVOL_ALERT_WEBHOOK_URL"})


class ConfigError(ValueError):
    """One or more environment variables have values the platform does not accept."""


def load_env() -> PlatformEnv:
    """Validate every variable in `PlatformEnv` from `os.environ`; raise `ConfigError` listing each
    bad one as `NAME='value': expected <accepted form> (<why>)`."""
    try:
        return PlatformEnv()
    except ValidationError as exc:
        forms = PlatformEnv.variables()
        lines = []
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "?"
            shown = "<secret, not shown>" if name in SECRET_VARIABLES else repr(os.environ.get(name, ""))
            why = str(error.get("msg", "")).removeprefix("Value error, ")
            line = f"{name}={shown}: expected {forms.get(name, 'a valid value')}"
            lines.append(line if why.startswith("expected") else f"{line} ({why})")
        raise ConfigError("bad configuration:\n  " + "\n  ".join(lines)) from None


def metrics_bind_address() -> str:
    """Where the processes' Prometheus endpoints listen: CRYPTOVOL_METRICS_BIND_ADDRESS (default
    127.0.0.1, loopback only; 0.0.0.0 in a container so compose's Prometheus can scrape it)."""
    return load_env().metrics_bind_address


class LakeLayout:
    """Where the lake's three trees live under a data dir: one definition for `Settings` and
    `cryptovol.lake.LakePaths`, which both have a `data_dir`."""

    data_dir: Path

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw"

    @property
    def features_dir(self) -> Path:
        return self.data_dir / "features"

    @property
    def predictions_dir(self) -> Path:
        return self.data_dir / "predictions"


@dataclass(frozen=True)
class Settings(LakeLayout):
    """A snapshot of the environment; build one with `Settings.from_env()`."""

    bootstrap_servers: str = DEFAULT_BOOTSTRAP
    data_dir: Path = field(default_factory=lambda: Path("data"))
    products: tuple[str, ...] = DEFAULT_PRODUCTS
    topic_partitions: int = 3
    mlflow_tracking_uri: str = ""
    model_name: str = "cryptovol-spike"
    tick_max_ahead_s: float = TICK_MAX_AHEAD_S
    tick_max_behind_s: float = TICK_MAX_BEHIND_S
    fsync_interval_s: float = FSYNC_INTERVAL_S

    @classmethod
    def from_env(cls, env: PlatformEnv | None = None) -> Settings:
        """The validated environment (`load_env()`, or `env`) reduced to what most code needs."""
        env = env or load_env()
        data_dir = env.data_dir
        tracking = env.mlflow_tracking_uri or f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}"
        return cls(
            bootstrap_servers=env.bootstrap_servers,
            data_dir=data_dir,
            products=env.product_ids,
            topic_partitions=env.topic_partitions,
            mlflow_tracking_uri=tracking,
            model_name=env.model_name,
            tick_max_ahead_s=env.tick_max_ahead_s,
            tick_max_behind_s=env.tick_max_behind_s,
            fsync_interval_s=env.fsync_interval_s,
        )

    # The rest of the data dir (the lake's trees come from `LakeLayout`).
    @property
    def deadletter_dir(self) -> Path:
        return self.data_dir / "deadletter"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def run_dir(self) -> Path:
        """Pid files and logs of the processes the CLI starts."""
        return self.data_dir / "run"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        return self.data_dir / "mlflow" / "artifacts"
