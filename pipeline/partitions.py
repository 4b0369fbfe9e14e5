"""One partition per recording session; the sensor adds them as sessions are finalized."""

from dagster import DynamicPartitionsDefinition

SESSIONS = "sessions"
sessions_partitions = DynamicPartitionsDefinition(name=SESSIONS)
