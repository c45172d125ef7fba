"""MQTT domain values shared by the client, the mapping and the cache. No aiomqtt here."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

from commandcentre.samples import Labels, MetricKind


class Message(NamedTuple):
    """One message as received: the topic, the raw payload, whether it was retained.

    A NamedTuple rather than a frozen dataclass: one is built per message, and a
    frozen dataclass costs three times as much to construct."""

    topic: str
    payload: bytes
    retain: bool = False


class BadPayload(enum.Enum):
    """Why a message produced no reading; the ``reason`` label of the bad-payload counter."""

    NOT_JSON = "not_json"  # the profile expects JSON and the payload is not
    WRONG_TYPE = "wrong_type"  # a value of a type the field cannot be (object, list, ...)
    NOT_FINITE = "not_finite"  # NaN or +-Inf
    TOO_LARGE = "too_large"  # over the subscription's max_payload_bytes
    INVALID_UTF8 = "invalid_utf8"
    UNKNOWN_FIELD = "unknown_field"  # a configured field is missing from the object
    UNKNOWN_VALUE = "unknown_value"  # a string no value map knows ("maybe")
    TOPIC_MISMATCH = "topic_mismatch"  # the topic does not fit the subscription's template
    EMPTY = "empty"  # an empty payload (e.g. a retained message being cleared)


class Reading(NamedTuple):
    """One value for one series. ``name`` is the full metric name, prefix included.
    (A NamedTuple for the same reason as ``Message``: several per message.)

    ``labels`` are the series' identity: topic-template labels and device labels in
    the order the mapping gives them; the cache adds the subscription's static labels.
    """

    name: str
    labels: Labels
    value: float
    kind: MetricKind = "gauge"
    help: str = ""


@dataclass(frozen=True, slots=True)
class Problem:
    reason: BadPayload
    detail: str  # short, for the log; never the whole payload


@dataclass(frozen=True, slots=True)
class ParseOutcome:
    """What one message mapped to: readings (availability included, as a ``..._up``
    reading), and the problems met. A message can yield readings *and* problems
    (one bad field among good ones)."""

    readings: tuple[Reading, ...] = ()
    problems: tuple[Problem, ...] = ()


@dataclass
class BrokerStats:
    """Self-metric state of one broker connection, written by the client."""

    connected: int = 0
    connects: int = 0
    reconnects: int = 0  # connects after the first
    last_connect: float = 0.0  # Unix time
    messages_received: int = 0
    messages_dropped: int = 0  # over max_queued_messages
    consumer_errors: int = 0  # messages whose processing raised (a bug: logged, then skipped)
    last_error: str = ""
    errors: dict[str, int] = field(default_factory=dict)  # connection failures by kind
