"""Looking up the senders of targets given by host name (``TrapService._look_up``),
with the system's resolver: ``localhost`` from /etc/hosts, and a name no resolver
accepts (an empty label fails before any query is sent, so no network is needed)."""

from __future__ import annotations

from structlog.testing import capture_logs

from commandcentre.store import SampleStore
from commandcentre.traps.receiver import TrapService

HALL = (("site", "town-hall"),)


async def test_a_failed_lookup_keeps_the_addresses_found_before_and_logs_once() -> None:
    service = TrapService(SampleStore())
    found = await service._look_up((("ups-hall", "localhost", HALL),))
    assert found.get("127.0.0.1") == ("ups-hall", HALL)
    service._looked_up = found
    with capture_logs() as logs:
        for _ in range(3):
            again = await service._look_up((("ups-hall", "bad..name", HALL),))
            assert again == found, "the addresses found before are kept"
    assert service.stats.sender_lookup_errors == 3
    failed = [e for e in logs if e["event"] == "snmp_trap_sender_lookup_failed"]
    assert [(e["target"], e["host"]) for e in failed] == [("ups-hall", "bad..name")]
    # another name that fails is logged on its own
    with capture_logs() as logs:
        await service._look_up((("ups-hall", "bad..name", HALL), ("pdu", "other..name", ())))
    assert [e["host"] for e in logs if e["event"] == "snmp_trap_sender_lookup_failed"] == [
        "other..name"
    ]


async def test_the_first_target_named_for_an_address_wins() -> None:
    service = TrapService(SampleStore())
    found = await service._look_up((("first", "localhost", ()), ("second", "localhost", HALL)))
    assert found.get("127.0.0.1") == ("first", ())
