"""The ``mqtt:`` section of the config: brokers and subscriptions.

Validated at load like the rest of the config (see ``commandcentre.config``);
``commandcentre.config`` embeds ``MqttSpec`` as the top-level ``mqtt`` key and
checks cross-references (a subscription's broker must exist).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from commandcentre.configbase import (
    Duration,
    SecretStr,
    Strict,
    _check_labels,
    _expand_env,
    resolve_secret,
)

Profile = Literal[
    "zigbee2mqtt", "tasmota", "esphome", "shelly_gen1", "shelly_gen2", "json", "number"
]

_METRIC_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


class TlsConfig(Strict):
    """TLS to the broker: CA only (server authentication) or with a client certificate.

    File paths are relative to the config file; ``${VAR}`` in them is expanded
    (``${CREDENTIALS_DIRECTORY}/mqtt-client.key``).
    """

    ca_file: str | None = None  # None: the system's trust store
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None  # SNI / name to verify, if not the host
    insecure_skip_verify: bool = False

    @model_validator(mode="before")
    @classmethod
    def _resolve_paths(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        base_dir = Path((info.context or {}).get("base_dir", "."))
        data = dict(data)
        for key in ("ca_file", "cert_file", "key_file"):
            if isinstance(data.get(key), str):
                path = Path(_expand_env(data[key], key))
                data[key] = str(path if path.is_absolute() else base_dir / path)
        return data

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class Backoff(Strict):
    initial: Duration = 1.0
    max: Duration = 60.0


class Broker(Strict):
    name: str
    host: str
    port: int | None = Field(default=None, ge=1, le=65535)  # 1883, or 8883 with TLS
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    client_id: str | None = None  # default: commandcentre-<hostname>-<broker name>
    keepalive: Duration = 30.0
    username: str | None = None
    password: SecretStr | None = None
    password_file: str | None = None
    password_credential: str | None = None  # a systemd credential name
    tls: TlsConfig | None = None
    # Messages received but not yet processed; beyond this the newest are dropped
    # and counted (commandcentre_mqtt_messages_dropped_total), so a burst cannot
    # take the daemon's memory.
    max_queued_messages: int = Field(default=10_000, ge=10, le=10_000_000)
    reconnect: Backoff = Field(default_factory=Backoff)

    @model_validator(mode="before")
    @classmethod
    def _resolve_password(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        base_dir = Path((info.context or {}).get("base_dir", "."))
        data = dict(data)
        resolve_secret(data, "password", base_dir)
        return data

    @model_validator(mode="after")
    def _password_needs_user(self) -> Broker:
        if self.password is not None and not self.username:
            # MQTT sends a password only with a user name: it would be silently unused
            raise ValueError("password (or password_file) needs username")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or (8883 if self.tls is not None else 1883)


class Field_(Strict):
    """One JSON field turned into one metric (profile ``json``)."""

    path: str  # dotted path into the JSON object, e.g. "ENERGY.Power" or "sensors.0.t"
    metric: str  # metric name without the subscription's prefix, e.g. "power_watts"
    help: str = ""
    type: Literal["gauge", "counter"] = "gauge"
    scale: float = 1.0
    offset: float = 0.0

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        if not _METRIC_RE.match(v):
            raise ValueError("must be a valid Prometheus metric name")
        return v


class Flatten(Strict):
    """All numeric (and mappable boolean/string) fields of a JSON object, by dotted path.

    ``allow``/``deny`` are shell-style patterns on the dotted path (``ENERGY.*``);
    empty ``allow`` means everything not denied.
    """

    allow: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)


class Subscription(Strict):
    """Topics of one kind from one broker, mapped to samples.

    ``topic`` is a template: named levels in braces become labels
    (``sensors/{site}/{room}/{device}`` subscribes to ``sensors/+/+/+``). For the
    built-in profiles it is the base the profile's own topics hang from, with a
    default per profile (``zigbee2mqtt`` for Zigbee2MQTT, ``tele/{device}`` for
    Tasmota, ...).
    """

    name: str
    broker: str | None = None  # default: the only broker
    profile: Profile = "json"
    topic: str | None = None
    qos: Literal[0, 1, 2] = 0
    # MQTT 5 shared subscription group ($share/<group>/...): several daemons split
    # the messages. Availability/LWT topics stay on ordinary subscriptions, since
    # shared subscriptions never deliver retained messages.
    shared_group: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    ttl: Duration = 900.0  # series not updated for this long leave /metrics
    max_series: int = Field(default=10_000, ge=1)
    metric_prefix: str = "commandcentre_sensor_"
    # profile json
    fields: list[Field_] = Field(default_factory=list)
    flatten: Flatten | None = None
    # profile number: the whole payload is one value
    metric: str | None = None
    help: str = ""
    scale: float = 1.0
    offset: float = 0.0
    # extra string -> number mappings, on top of the built-in ones
    # (ON/OFF, open/closed, true/false, online/offline, ...), case-insensitive
    value_map: dict[str, float] = Field(default_factory=dict)
    max_payload_bytes: int = Field(default=65_536, ge=16)

    _labels = field_validator("labels")(_check_labels)

    @field_validator("metric_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if v and not _METRIC_RE.match(v):
            raise ValueError("must be a valid start of a Prometheus metric name")
        return v

    @field_validator("metric")
    @classmethod
    def _metric(cls, v: str | None) -> str | None:
        if v is not None and not _METRIC_RE.match(v):
            raise ValueError("must be a valid Prometheus metric name")
        return v

    @model_validator(mode="after")
    def _profile_needs(self) -> Subscription:
        if self.profile == "number" and not self.metric:
            raise ValueError("profile number needs metric (the metric name for the value)")
        if self.profile in ("json", "number") and not self.topic:
            raise ValueError(f"profile {self.profile} needs topic (a topic template)")
        if self.profile == "json" and not self.fields and self.flatten is None:
            raise ValueError("profile json needs fields or flatten")
        return self


class MqttSpec(Strict):
    """Cross-references (unique names, a subscription's broker) are checked by the
    config loader, which knows the key paths to report."""

    brokers: list[Broker] = Field(default_factory=list)
    subscriptions: list[Subscription] = Field(default_factory=list)
    max_series_total: int = Field(default=200_000, ge=1)

    def broker_of(self, sub: Subscription) -> Broker:
        name = sub.broker or self.brokers[0].name
        return next(b for b in self.brokers if b.name == name)
