"""``varbinds_to_families`` (what the poller runs on every poll) against the
reference path it short-cuts: ``render_families(varbinds_to_samples(...).samples,
extra_labels)``. Both must give the same bytes and the same counts, for the
recorded devices with every upstream module and for generated device data."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commandcentre.config import Module
from commandcentre.samples import Labels
from commandcentre.snmp.mapping import (
    FamilyRenderer,
    RenderedPoll,
    compile_module,
    varbinds_to_families,
    varbinds_to_samples,
)
from commandcentre.snmp.types import SnmpType, VarBind
from commandcentre.store import SampleStore, exposition, render_families
from tests.unit.test_snmp_mapping import load_snmprec, metric_module, module, upstream_module, vb

T = SnmpType

EXTRAS: list[Labels] = [
    (),
    (("target", "sw1"),),
    # A static label named like a sample label (the sample's wins), and one to escape.
    (("target", "sw1"), ("ifDescr", "static"), ("site", 'a "b"\\c\nd')),
]


def assert_same(mod: Module, varbinds: list[VarBind], extra: Labels, wrap: bool = True) -> None:
    reference = varbinds_to_samples(mod, varbinds, wrap_counters=wrap)
    fams = render_families(reference.samples, extra)
    got = varbinds_to_families(mod, varbinds, extra, wrap_counters=wrap)
    assert got.families == fams
    assert got.series == len(reference.samples)
    assert got.wrong_type == reference.wrong_type
    assert got.first_problem == reference.first_problem
    assert got.duplicates == reference.duplicates


@pytest.mark.parametrize("name", ["system", "if_mib", "ip_mib", "hrSystem", "hrStorage", "ups_mib"])
@pytest.mark.parametrize("recording", ["cisco-c3560.snmprec", "eaton-93e-80.snmprec"])
@pytest.mark.parametrize("extra", EXTRAS)
def test_recorded_devices_render_as_the_reference(name: str, recording: str, extra: Labels) -> None:
    varbinds = load_snmprec(recording)
    assert_same(upstream_module(name), varbinds, extra)
    assert_same(upstream_module(name), list(reversed(varbinds)), extra)  # any order


def test_the_cisco_if_mib_poll_is_not_trivially_equal() -> None:
    """The recorded switch exercises the direct path (counters), the sample path
    (strings, EnumAsInfo) and lookups; an empty result would pass vacuously."""
    got = varbinds_to_families(upstream_module("if_mib"), load_snmprec("cisco-c3560.snmprec"))
    names = {f.name for f in got.families}
    assert {"ifHCInOctets", "ifType_info", "ifPhysAddress", "ifNumber"} <= names
    assert got.series > 100


def test_integers_render_as_the_store_writes_floats() -> None:
    mod = module(
        """
        metrics:
          - {name: c, oid: 1.1.1, type: counter, help: c, indexes: [{labelname: i, type: gauge}]}
          - {name: g, oid: 1.1.2, type: gauge, help: g, indexes: [{labelname: i, type: gauge}]}
          - {name: s, oid: 1.1.3, type: gauge, help: s, scale: 0.1, offset: -3,
             indexes: [{labelname: i, type: gauge}]}
        """
    )
    varbinds = [
        vb("1.1.1.1", T.COUNTER64, 2**64 - 1),  # wraps at 2**53: above 1e15, exponent form
        vb("1.1.1.2", T.COUNTER64, 10**15 - 1),
        vb("1.1.1.3", T.COUNTER64, 10**15),
        vb("1.1.1.4", T.COUNTER32, 0),
        vb("1.1.2.1", T.INTEGER, -(10**15)),
        vb("1.1.2.2", T.INTEGER, -5),
        vb("1.1.2.3", T.OPAQUE, b"\x9f\x78\x04\x3f\xc0\x00\x00"),  # Opaque float 1.5
        vb("1.1.2.4", T.OCTET_STRING, b"x"),  # wrong type for a gauge
        vb("1.1.3.1", T.GAUGE32, 7),
        vb("1.1.3.2", T.TIMETICKS, 2**32 - 1),
    ]
    for wrap in (True, False):
        for extra in EXTRAS:
            assert_same(mod, varbinds, extra, wrap)
    text = exposition([varbinds_to_families(mod, varbinds).families])
    assert 'c{i="1"} 9007199254740991.0\n' in text  # 2**53 - 1, as format_value writes it
    assert 'c{i="2"} 999999999999999\n' in text
    assert 'c{i="3"} 1000000000000000.0\n' in text
    assert 'g{i="1"} -1000000000000000.0\n' in text
    assert 'g{i="2"} -5\n' in text
    assert 'g{i="3"} 1.5\n' in text
    assert 'g{i="4"}' not in text


def test_duplicate_series_are_dropped_as_in_the_reference() -> None:
    """An index longer than its type uses (extra sub-identifiers are ignored) and
    two metric OIDs with one name both make repeated series."""
    mod = module(
        """
        metrics:
          - {name: m, oid: 1.1.1, type: gauge, help: m,
             indexes: [{labelname: i, type: gauge}]}
          - {name: m, oid: 1.1.2, type: gauge, help: other help,
             indexes: [{labelname: i, type: gauge}]}
        """
    )
    varbinds = [
        vb("1.1.1.1.5", T.INTEGER, 1),
        vb("1.1.1.1.6", T.INTEGER, 2),
        vb("1.1.2.1", T.INTEGER, 3),
        vb("1.1.2.2", T.INTEGER, 4),
    ]
    assert_same(mod, varbinds, (("target", "t"),))
    got = varbinds_to_families(mod, varbinds)
    assert got.duplicates == 2
    assert got.families[0].lines == 'm{i="1"} 1\nm{i="2"} 4\n'


def test_shortest_metric_oid_owns_a_varbind_even_within_a_run() -> None:
    mod = module(
        """
        metrics:
          - {name: inner, oid: 1.1.2.1, type: gauge, help: i}
          - {name: outer, oid: 1.1.2, type: gauge, help: o,
             indexes: [{labelname: a, type: gauge}, {labelname: b, type: gauge}]}
          - {name: after, oid: 1.1.3, type: gauge, help: a}
        """
    )
    varbinds = [
        vb("1.1.2.1.1", T.INTEGER, 1),
        vb("1.1.2.1.2", T.INTEGER, 2),
        vb("1.1.2.2.1", T.INTEGER, 3),
        vb("1.1.3", T.INTEGER, 4),
        vb("1.1.3.0", T.INTEGER, 5),
        vb("1.9", T.INTEGER, 6),  # no metric
    ]
    assert_same(mod, varbinds, ())
    assert {f.name for f in varbinds_to_families(mod, varbinds).families} == {"outer", "after"}


def _table(
    descr: dict[int, str], octets: dict[int, int], types: dict[int, int] | None = None
) -> list[VarBind]:
    types = types or dict.fromkeys(octets, 6)
    return [
        *(vb(f"1.3.6.1.2.1.2.2.1.2.{i}", T.OCTET_STRING, d.encode()) for i, d in descr.items()),
        *(vb(f"1.3.6.1.2.1.2.2.1.3.{i}", T.INTEGER, n) for i, n in types.items()),
        *(vb(f"1.3.6.1.2.1.2.2.1.10.{i}", T.COUNTER32, n) for i, n in octets.items()),
    ]


def test_a_kept_renderer_shows_each_polls_labels_values_and_rows() -> None:
    """What the renderer keeps between polls never shows through: a lookup label
    that changed, a value that changed (integer and enum), a row that vanished
    and one that came back all show in the store as that poll has them."""
    mod = upstream_module("if_mib")
    extra = (("target", "sw"),)
    renderer = FamilyRenderer(compile_module(mod), extra)
    store = SampleStore()

    def poll(varbinds: list[VarBind]) -> str:
        result: RenderedPoll = renderer.render(varbinds)
        store.put_families(("snmp", "sw", "if_mib"), result.families)
        text = exposition(store.families())
        reference = varbinds_to_samples(mod, varbinds).samples
        assert text == exposition([render_families(reference, extra)])
        return text

    def line(metric: str, i: int, descr: str, value: int, if_type: str = "") -> str:
        labels = f'ifIndex="{i}",ifAlias="",ifDescr="{descr}",ifName=""'
        if if_type:
            labels += f',ifType="{if_type}"'
        return f'{metric}{{{labels},target="sw"}} {value}\n'

    first = poll(_table({1: "Gi1", 2: "Gi2"}, {1: 10, 2: 20}))
    assert line("ifInOctets", 1, "Gi1", 10) in first
    assert line("ifInOctets", 2, "Gi2", 20) in first
    assert line("ifType_info", 1, "Gi1", 1, "ethernetCsmacd") in first
    assert store.series_count() == 4

    second = poll(_table({1: "uplink"}, {1: 11}, {1: 24}))
    assert line("ifInOctets", 1, "uplink", 11) in second
    assert line("ifType_info", 1, "uplink", 1, "softwareLoopback") in second
    assert "Gi1" not in second
    assert 'ifIndex="2"' not in second
    assert "ethernetCsmacd" not in second
    assert store.series_count() == 2

    third = poll(_table({1: "uplink", 2: "Gi2"}, {1: 11, 2: 20}))
    assert first.replace('"Gi1"', '"uplink"').replace("} 10\n", "} 11\n") == third


def test_a_renderer_is_the_same_whatever_it_kept() -> None:
    """A renderer kept across polls renders each poll as a fresh one would."""
    varbinds = load_snmprec("cisco-c3560.snmprec")
    for name in ("if_mib", "system", "ip_mib"):
        renderer = FamilyRenderer(compile_module(upstream_module(name)), EXTRAS[2])
        for poll in (varbinds, varbinds[::2], varbinds, []):
            fresh = varbinds_to_families(upstream_module(name), poll, EXTRAS[2])
            assert renderer.render(poll) == fresh


_TYPES = ["gauge", "counter", "DisplayString", "PhysAddress48", "EnumAsInfo", "EnumAsStateSet",
          "Bits", "Float", "DateAndTime", "InetAddress"]  # fmt: skip
_INDEX_TYPES = ["gauge", "PhysAddress48", "DisplayString", "InetAddress", "EnumAsInfo"]
_values = st.one_of(
    st.tuples(
        st.sampled_from([T.INTEGER, T.COUNTER32, T.GAUGE32, T.TIMETICKS, T.COUNTER64]),
        st.integers(-(2**64), 2**64),
    ),
    st.tuples(st.sampled_from([T.OCTET_STRING, T.OPAQUE, T.IP_ADDRESS]), st.binary(max_size=12)),
    st.tuples(st.sampled_from([T.NULL, T.NO_SUCH_OBJECT]), st.none()),
)


@settings(max_examples=300, deadline=None)
@given(
    typ=st.sampled_from(_TYPES),
    index_type=st.sampled_from(_INDEX_TYPES),
    scaled=st.booleans(),
    rows=st.lists(
        st.tuples(st.integers(0, 3), st.lists(st.integers(0, 300), max_size=5), _values),
        max_size=12,
    ),
    extra=st.sampled_from(EXTRAS),
    wrap=st.booleans(),
)
def test_generated_device_data_renders_as_the_reference(  # noqa: PLR0917 - hypothesis passes them
    typ: str,
    index_type: str,
    scaled: bool,
    rows: list[tuple[int, list[int], tuple[SnmpType, Any]]],
    extra: Labels,
    wrap: bool,
) -> None:
    """Column 1: a gauge (scaled or not); 2: any type; 3: a lookup source; 0: a
    scalar. Random suffixes give padded, repeated and impossible indexes."""
    index = [{"labelname": "ifDescr", "type": index_type}]
    scale: dict[str, Any] = {"scale": 0.5, "offset": 1.0} if scaled else {}
    mod = Module.model_validate(
        {
            "walk": ["1"],
            "metrics": [
                {"name": "s", "oid": "1.5.0", "type": "gauge", "help": "s"},
                {"name": "g", "oid": "1.5.1", "type": "gauge", "help": "g", "indexes": index,
                 **scale},
                {"name": "m", "oid": "1.5.2", "type": typ, "help": "m", "indexes": index,
                 "enum_values": {0: "a", 1: "b", 9: "c"},
                 "lookups": [{"labels": ["ifDescr"], "labelname": "n", "oid": "1.5.3",
                              "type": "DisplayString"}]},
            ],
        }
    )  # fmt: skip
    varbinds = [VarBind((1, 5, column, *suffix), t, v) for column, suffix, (t, v) in rows]
    assert_same(mod, varbinds, extra, wrap)
    assert_same(metric_module(name="x", type=typ), varbinds, extra, wrap)
    # The same module polled again through one renderer: the varbinds with their
    # values changed and some dropped, then the first poll again.
    renderer = FamilyRenderer(compile_module(mod), extra, wrap_counters=wrap)
    changed = [
        VarBind(v.oid, v.type, v.value + n if isinstance(v.value, int) else v.value)
        for n, v in enumerate(varbinds)
        if n % 3
    ]
    for poll in (varbinds, changed, varbinds, varbinds):
        fresh = varbinds_to_families(mod, poll, extra, wrap_counters=wrap)
        assert renderer.render(poll) == fresh
