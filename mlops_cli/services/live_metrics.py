"""Live quality as Prometheus gauges on the drift service's /metrics (monitoring/live_quality.py computes it).

Contract with charts/observability (the "Live accuracy" panel and the MlopsLiveAccuracyLow alert query these):
`mlops_live_accuracy{version}` with `_low` / `_high` (its 95% bootstrap interval), `mlops_live_macro_f1{version}`,
`mlops_live_labels{version}` (labels in the window; every version with any) and `mlops_live_accuracy_floor`.
A version under [feedback].min_labels exports its label count only.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge


class LiveQualityMetrics:
    def __init__(self, registry: CollectorRegistry, floor: float) -> None:
        r = registry
        self.accuracy = Gauge("mlops_live_accuracy", "Accuracy on labelled feedback in [feedback].window.",
                              ["version"], registry=r)
        self.accuracy_low = Gauge("mlops_live_accuracy_low", "Lower end of the accuracy's 95% bootstrap interval.",
                                  ["version"], registry=r)
        self.accuracy_high = Gauge("mlops_live_accuracy_high", "Upper end of the accuracy's 95% bootstrap interval.",
                                   ["version"], registry=r)
        self.macro_f1 = Gauge("mlops_live_macro_f1", "Macro F1 on labelled feedback in [feedback].window.",
                              ["version"], registry=r)
        self.labels = Gauge("mlops_live_labels", "Labelled predictions of the version in [feedback].window.",
                            ["version"], registry=r)
        self.floor = Gauge("mlops_live_accuracy_floor", "[feedback].accuracy_floor: the alert fires below it.",
                           registry=r)
        self.floor.set(floor)

    def observe(self, quality) -> None:
        for gauge in (self.accuracy, self.accuracy_low, self.accuracy_high, self.macro_f1, self.labels):
            gauge.clear()
        for version, q in quality.versions.items():
            self.labels.labels(version=version).set(q.labels)
            if q.accuracy is None:
                continue
            self.accuracy.labels(version=version).set(q.accuracy)
            self.accuracy_low.labels(version=version).set(q.accuracy_interval[0])
            self.accuracy_high.labels(version=version).set(q.accuracy_interval[1])
            self.macro_f1.labels(version=version).set(q.macro_f1)
