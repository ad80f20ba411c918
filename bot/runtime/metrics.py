"""Prometheus metrics of one process, in a registry of its own."""

from __future__ import annotations

import gc

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

__all__ = ["Metrics"]


class Metrics:
    """The counters and gauges `/metrics` exposes."""

    def __init__(self) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call] # the *_created series double the output for no use here
        self.registry = CollectorRegistry()
        self.outbox_depth = Gauge(
            "taskjuice_outbox_depth", "Outbox items waiting to be sent", registry=self.registry
        )
        self.outbox_oldest_age = Gauge(
            "taskjuice_outbox_oldest_age_seconds",
            "Age of the oldest outbox item waiting to be sent",
            registry=self.registry,
        )
        self.outbox_dead = Gauge(
            "taskjuice_outbox_dead_letters",
            "Outbox items given up on (dead letters), awaiting an operator",
            registry=self.registry,
        )
        self.outbox_queue_depth = Gauge(
            "taskjuice_outbox_queue_depth",
            "Outbox items waiting, by tenant (TaskJuice workspace) and priority (0 urgent)",
            ["tenant", "priority"],
            registry=self.registry,
        )
        self.outbox_queue_oldest_age = Gauge(
            "taskjuice_outbox_queue_oldest_age_seconds",
            "Age of the oldest outbox item waiting, by tenant and priority",
            ["tenant", "priority"],
            registry=self.registry,
        )
        self.slack_permits = Counter(
            "taskjuice_slack_permits_granted",
            "Slack egress permits this process leased from the shared budget, by method",
            ["method"],
            registry=self.registry,
        )
        self.slack_permit_waits = Counter(
            "taskjuice_slack_permit_waits",
            "Slack calls that found no permit and waited (or went back to the outbox), by method",
            ["method"],
            registry=self.registry,
        )
        self.slack_ratelimited = Counter(
            "taskjuice_slack_ratelimited",
            "Slack calls answered 429, by method",
            ["method"],
            registry=self.registry,
        )
        self.dead_lettered = Counter(
            "taskjuice_outbox_dead_lettered",
            "Outbox items this process moved to the dead-letter state",
            ["kind"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "taskjuice_deliveries",
            "Outbox delivery attempts by kind and result",
            ["kind", "result"],
            registry=self.registry,
        )
        self.decisions = Counter(
            "taskjuice_decisions",
            "Decisions and transitions recorded, by channel and action",
            ["channel", "action"],
            registry=self.registry,
        )
        self.decision_batch_size = Histogram(
            "taskjuice_decision_batch_size",
            "Decisions read and written together in one batch (see README, Performance)",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        self.failovers = Counter(
            "taskjuice_delivery_failovers",
            "Requests sent to an approver on another channel after theirs failed, by new channel",
            ["channel"],
            registry=self.registry,
        )
        self.undeliverable = Counter(
            "taskjuice_approvals_undeliverable",
            "Tiers that reached none of their approvers (approval.undeliverable sent)",
            registry=self.registry,
        )
        self.worker_restarts = Counter(
            "taskjuice_worker_restarts",
            "Background workers (outbox dispatcher, sweeper) restarted after a crash",
            ["worker"],
            registry=self.registry,
        )
        self.sweep_batch_seconds = Histogram(
            "taskjuice_sweep_batch_seconds",
            "Duration of one timeout-sweep batch transaction",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.statistics_refreshed = Counter(
            "taskjuice_statistics_refreshed",
            "Tables analyzed by the sweeper after outgrowing their planner statistics",
            ["table"],
            registry=self.registry,
        )
        self.gc_frozen = Gauge(
            "taskjuice_gc_frozen_objects",
            "Objects the garbage collector no longer examines (the heap as it stood at start-up)",
            registry=self.registry,
        )
        self.gc_frozen.set_function(gc.get_freeze_count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
