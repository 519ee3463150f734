"""Streaming ingestion (issue 21): records from a broker into the node's durable period store.

In dependency order: ``records`` (one record checked, pure), ``store`` (SQLite period store,
idempotent by transaction id), ``source`` (the broker interface), ``redis_source`` and
``kafka_source`` (its Redis Streams and Kafka adapters), ``consumer`` (receive, store, then
acknowledge). See docs/design-streaming.md.
"""
