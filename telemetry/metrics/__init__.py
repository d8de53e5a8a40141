"""Prometheus metrics: the catalogue, the per-(queue, task) series, the delivery recorder, publish counting and forwarding, queue depth and age, and the worker's metrics concern (``concern``)."""
