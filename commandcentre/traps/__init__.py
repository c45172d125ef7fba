"""SNMP notifications (v1/v2c traps, informs, SNMPv3) received by the daemon.

``receiver`` owns the UDP socket; ``decode`` is the one call into the BER/USM
codec; ``mapping`` turns a decoded notification into an event with the shipped
trap table (``table``); ``state`` counts and keeps the state gauges;
``alertmanager`` hands events to Alertmanager. Only ``receiver`` and
``alertmanager`` touch the network.
"""
