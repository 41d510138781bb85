"""Common library of the sluice services.

Settings, the envelope and header codec, Kafka loop helpers, the local stack,
metrics, logging and the one exception tree (`shared.errors`).
"""
