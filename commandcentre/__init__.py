"""commandcentre: SNMP and MQTT monitoring daemon exposing Prometheus metrics."""

__version__ = "0.1.0"
