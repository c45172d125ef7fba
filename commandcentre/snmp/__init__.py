"""SNMP: the client interface (``types``), its implementations (``fast_client`` on our own
BER codec ``codec`` and SNMPv3 USM ``usm``; ``pysnmp_client`` on pysnmp, the fallback),
the pure varbind -> sample mapping (``mapping``) and the poller that drives them."""
