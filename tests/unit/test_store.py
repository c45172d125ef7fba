"""The text exposition: checked by prometheus-client's parser and by promtool."""

from __future__ import annotations

import gzip
import math
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from commandcentre.samples import Sample
from commandcentre.store import (
    Family,
    SampleStore,
    encode_parts,
    exposition,
    exposition_parts,
    format_value,
    gzip_parts,
    render_families,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (1.0, "1"),
        (-3.0, "-3"),
        (2.5, "2.5"),
        (1e20, "1e+20"),
        (9007199254740992.0, "9007199254740992.0"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
        (float("nan"), "NaN"),
        (0.1, "0.1"),
    ],
)
def test_format_value(value: float, text: str) -> None:
    assert format_value(value) == text


def test_exposition_merges_families_across_keys_and_escapes() -> None:
    store = SampleStore()
    store.put(
        ("snmp", "sw1", "if_mib"),
        [
            Sample("ifHCInOctets", (("ifIndex", "1"),), 10, "counter", "in octets"),
            Sample("ifDescr_info", (("ifDescr", 'Gi0/1 "uplink"\\x\n'),), 1, "gauge", "d"),
        ],
        (("target", "sw1"), ("room", "A")),
    )
    store.put(
        ("snmp", "sw2", "if_mib"),
        [Sample("ifHCInOctets", (("ifIndex", "1"),), 20, "counter", "in octets")],
        (("target", "sw2"),),
    )
    text = exposition(store.families())
    assert text == (
        "# HELP ifHCInOctets in octets\n"
        "# TYPE ifHCInOctets counter\n"
        'ifHCInOctets{ifIndex="1",target="sw1",room="A"} 10\n'
        'ifHCInOctets{ifIndex="1",target="sw2"} 20\n'
        "# HELP ifDescr_info d\n"
        "# TYPE ifDescr_info gauge\n"
        'ifDescr_info{ifDescr="Gi0/1 \\"uplink\\"\\\\x\\n",target="sw1",room="A"} 1\n'
    )
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    # prometheus-client's parser strips _total conventions only for counters named so;
    # the snmp_exporter-style counter name survives.
    assert fams["ifHCInOctets"].type == "counter"
    assert [s.labels["target"] for s in fams["ifHCInOctets"].samples] == ["sw1", "sw2"]
    assert fams["ifDescr_info"].samples[0].labels["ifDescr"] == 'Gi0/1 "uplink"\\x\n'
    assert store.series_count() == 3


def test_sample_label_wins_over_extra_label_of_same_name() -> None:
    fams = render_families([Sample("m", (("room", "own"),), 1)], (("target", "t"), ("room", "cfg")))
    assert fams[0].lines == 'm{room="own",target="t"} 1\n'


def test_drop_removes_a_key_and_its_series() -> None:
    store = SampleStore()
    store.put("a", [Sample("m", (), 1)])
    store.put("b", [Sample("m", (), 2)])
    store.drop("a")
    assert store.keys() == ["b"]
    assert exposition(store.families()).endswith("m 2\n")
    store.drop("missing")  # dropping what is not there is not an error
    assert store.series_count() == 1


label_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b_total", "c:d"]),
            st.dictionaries(st.sampled_from(["x", "y", "ifDescr"]), label_text, max_size=3),
            st.floats(allow_nan=True, allow_infinity=True),
        ),
        max_size=20,
    )
)
def test_any_samples_round_trip_through_prometheus_parser(
    rows: list[tuple[str, dict[str, str], float]],
) -> None:
    samples = [Sample(n, tuple(sorted(lbl.items())), v) for n, lbl, v in rows]
    text = exposition([render_families(samples)])
    parsed = [
        (s.name, dict(s.labels), s.value)
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    ]
    # the parser groups a family's samples together, as the exposition does
    expected = sorted(
        ((n, dict(lbl), v) for n, lbl, v in rows), key=lambda r: [n for n, _, _ in rows].index(r[0])
    )
    assert len(parsed) == len(expected)
    for (pn, pl, pv), (en, el, ev) in zip(parsed, expected, strict=True):
        assert (pn, pl) == (en, el)
        assert (math.isnan(pv) and math.isnan(ev)) or pv == ev


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is installed by ./dev test")
def test_promtool_accepts_the_exposition() -> None:
    store = SampleStore()
    store.put(
        "k",
        [
            Sample("ifHCInOctets", (("ifIndex", "1"),), 10, "counter", "Octets received"),
            Sample("upsBatteryTemperature", (), 21.5, "gauge", "Battery temperature"),
            Sample("commandcentre_snmp_errors_total", (("reason", "timeout"),), 3, "counter", "F"),
        ],
        (("target", "ups1"),),
    )
    proc = subprocess.run(
        ["promtool", "check", "metrics"],
        input=exposition(store.families()),
        capture_output=True,
        text=True,
        check=False,
    )
    # promtool lints names (counters should end in _total); snmp_exporter's own names
    # break that convention on purpose, so only a parse error counts as failure here.
    assert "error while linting" not in proc.stderr + proc.stdout, proc.stderr + proc.stdout
    assert "text format parsing error" not in proc.stderr + proc.stdout


class Source:
    """A FamilySource that renders ``pending`` slices, one per step, counting them."""

    def __init__(self, lines: str, pending: int) -> None:
        self.lines = lines
        self.pending = pending
        self.steps = 0

    def render_step(self) -> bool:
        if self.pending:
            self.pending -= 1
            self.steps += 1
        return self.pending > 0

    def families(self) -> tuple[Family, ...]:
        while self.render_step():
            pass
        if not self.lines:
            return ()
        return (Family("m", "gauge", "from a source", self.lines),)

    def series_count(self) -> int:
        return self.lines.count("\n")


def test_sources_are_merged_with_put_groups_and_rendered_in_steps() -> None:
    store = SampleStore()
    store.put("snmp", [Sample("m", (("t", "a"),), 1, "gauge", "put help")])
    source = Source('m{t="b"} 2\n', pending=3)
    empty = Source("", pending=0)
    store.add_source("mqtt", source)
    store.add_source("nothing", empty)
    assert store.keys() == ["snmp", "mqtt"], "a source with no series has nothing to expose"
    assert store.series_count() == 2
    steps = list(store.pending_renders())
    assert len(steps) == 2, "one yield between slices, none after the last"
    assert source.steps == 3
    assert exposition(store.families()) == (
        '# HELP m put help\n# TYPE m gauge\nm{t="a"} 1\nm{t="b"} 2\n'
    )
    store.drop("mqtt")
    assert store.keys() == ["snmp"]
    store.add_source("snmp", Source('m{t="c"} 3\n', 0))  # replaces the put group
    assert exposition(store.families()).endswith('m{t="c"} 3\n')
    assert store.series_count() == 1


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), label_text), max_size=40),
    st.integers(min_value=1, max_value=64),
)
def test_parts_encode_and_gzip_to_the_exposition(
    rows: list[tuple[str, str]], slice_bytes: int
) -> None:
    groups = [render_families([Sample(n, (("x", v),), i)]) for i, (n, v) in enumerate(rows)]
    text = exposition(groups)
    parts = exposition_parts(groups)
    assert "".join(parts) == text
    pieces = list(encode_parts(parts, slice_bytes))
    assert b"".join(pieces) == text.encode()
    assert all(len(p) < slice_bytes + 200 for p in pieces[:-1])
    assert gzip.decompress(gzip_parts(parts, 1)) == text.encode()
