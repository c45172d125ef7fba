"""MQTT: the broker connection (``aiomqtt_client``, the only aiomqtt import), the pure
message -> reading mapping and profiles (``mapping``), and the series cache with TTL
and cardinality limits (``cache``) that feeds the sample store."""
