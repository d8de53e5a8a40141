"""The generated Kubernetes manifests: the rules as a PrometheusRule, and the KEDA ScaledObject.

Both come from dashboards/config.yaml, like the rule files, and land in
deploy/kubernetes/ beside the hand-written Deployments and PodMonitor.

The ScaledObject scales the worker Deployment on three kinds of trigger:

* one Redis list trigger per key of every consumed queue (the config's ``queues``) (the queue's list under
  ``keyPrefix``, then its priority sub-lists), named by the depth poller's own key
  builder: they wake the Deployment from zero the moment a message waits;
* a Prometheus trigger on ``queue:celery_capacity_demand:sum`` summed over the
  consumed queues, ``AverageValue`` with ``workerConcurrency`` as the target: the
  replicas that demand needs;
* a Prometheus trigger on the ETA tasks workers hold: at least one replica stays
  while any is held, because scaling in returns them to the queue (redelivered).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dashboards.config import queue_regex, selector
from telemetry.metrics.queues import priority_keys

RuleBuilder = Callable[[dict[str, Any]], dict[str, Any]]


def fleet_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config as the manifests deploy it: a broker exporter runs, and a
    ScaledObject with ``minReplicas: 0`` scales to zero on purpose (``minWorkers: 0``)."""
    scales_to_zero = int(config["keda"]["minReplicas"]) == 0
    return {
        **config,
        "minWorkers": 0 if scales_to_zero else config["minWorkers"],
        "brokerExporter": {**config["brokerExporter"], "enabled": True},
    }


def prometheus_rule(
    config: dict[str, Any], rule_files: Mapping[str, RuleBuilder]
) -> dict[str, Any]:
    """Every group of every rule file, built for the fleet the manifests deploy, in one PrometheusRule."""
    kube = config["kubernetes"]
    fleet = fleet_config(config)
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": prometheus_rule_name(config),
            "namespace": kube["namespace"],
            "labels": dict(kube["ruleLabels"]),
        },
        "spec": {
            "groups": [group for build in rule_files.values() for group in build(fleet)["groups"]]
        },
    }


def prometheus_rule_name(config: dict[str, Any]) -> str:
    """The PrometheusRule holding dashboards/rules/*.yml, named after the worker Deployment."""
    return f"{config['keda']['deployment']}-rules"


def list_keys(config: dict[str, Any]) -> list[str]:
    """Every Redis list holding the consumed queues' messages, as the poller names them."""
    options = {"global_keyprefix": config["keyPrefix"]}
    return [key for queue in config["queues"] for key in priority_keys(queue, options)]


def scaled_object(config: dict[str, Any]) -> dict[str, Any]:
    kube, keda = config["kubernetes"], config["keda"]
    concurrency = str(config["workerConcurrency"])
    queues = queue_regex(config)
    consumed = selector(config, f'queue=~"{queues}"')
    redis = [
        {
            "type": "redis",
            "name": f"list-{n}",
            "metadata": {
                "address": keda["redisAddress"],
                "databaseIndex": str(keda["redisDatabase"]),
                "listName": key,
                "listLength": concurrency,
                "activationListLength": "0",
            },
        }
        for n, key in enumerate(list_keys(config))
    ]
    prometheus = [
        {
            "type": "prometheus",
            "name": "demand",
            "metricType": "AverageValue",
            "metadata": {
                "serverAddress": keda["prometheusAddress"],
                "query": f'sum(queue:celery_capacity_demand:sum{{queue=~"{queues}"}})',
                "threshold": concurrency,
                "activationThreshold": "0",
                "ignoreNullValues": "true",
            },
        },
        {
            "type": "prometheus",
            "name": "eta-held",
            "metricType": "AverageValue",
            "metadata": {
                "serverAddress": keda["prometheusAddress"],
                # 1 while any queue has ETA tasks held, so at least one replica stays.
                "query": "clamp_max(count(sum by (queue) "
                f"(celery_tasks_eta_waiting{consumed}) > 0), 1) or vector(0)",
                "threshold": "1",
                "activationThreshold": "0",
                "ignoreNullValues": "true",
            },
        },
    ]
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": keda["deployment"], "namespace": kube["namespace"]},
        "spec": {
            "scaleTargetRef": {"name": keda["deployment"]},
            "minReplicaCount": int(keda["minReplicas"]),
            "maxReplicaCount": int(keda["maxReplicas"]),
            "pollingInterval": int(keda["pollingInterval"]),
            "cooldownPeriod": int(keda["cooldownPeriod"]),
            "triggers": redis + prometheus,
        },
    }
