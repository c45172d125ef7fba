"""Fixtures for the integration tests: real agents started per module, the
in-process hostile agent per test. The helpers themselves are in ``agents.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

# (the repository root is on sys.path through pytest's `pythonpath` setting)
from tests.integration.agents import (
    AgentProcess,
    HostileAgent,
    HostileMode,
    run_snmpd,
)


@pytest.fixture(scope="module")
def snmpd_agent() -> Iterator[AgentProcess]:
    """net-snmp snmpd on free ports (UDP and TCP), with ``SNMPD_USERS``."""
    with run_snmpd() as agent:
        yield agent


@pytest.fixture
async def hostile() -> AsyncIterator[HostileAgent]:
    """A hostile agent on a free port; set ``.mode`` (and ``.delay``) in the test."""
    async with HostileAgent(HostileMode.SILENT) as agent:
        yield agent
