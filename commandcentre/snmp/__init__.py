"""SNMP: the client interface (``types``), its pysnmp implementation (``pysnmp_client``),
the pure varbind -> sample mapping (``mapping``) and the poller that drives them."""
