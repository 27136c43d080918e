"""The ``onduty`` command and the local stack: broker, topics, services."""
