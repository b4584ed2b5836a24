"""What a drift run found: per-column tests, label shares and the verdict, JSON-safe."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

STATUS_OK = "ok"
STATUS_INSUFFICIENT = "insufficient_data"


@dataclass
class FeatureDrift:
    feature: str
    kind: str          # numerical | categorical
    method: str        # the test Evidently chose, e.g. "K-S p_value", "Wasserstein distance (normed)"
    score: float       # the test's statistic: a p-value (drift when below threshold) or a distance (above)
    threshold: float
    drifted: bool


@dataclass
class LabelShare:
    label: str
    reference_count: int
    current_count: int
    reference_share: float
    current_share: float


@dataclass
class DriftResult:
    status: str
    message: str
    window_start: str
    window_end: str
    log_path: str
    model_version: str | None
    samples: int
    min_samples: int
    malformed_lines: int
    other_version_samples: int = 0
    reference_samples: int = 0
    drift_share: float = 0.5
    dataset_drift: bool | None = None
    share_drifted: float | None = None
    drifted_features: int = 0
    features: list[FeatureDrift] = field(default_factory=list)
    labels: list[LabelShare] = field(default_factory=list)
    report_path: str | None = None
    computed_at: str = ""
    # How many of the `samples` predictions were compared: a uniform random sample of at most
    # [drift].sample_size keeps memory bounded whatever the size of the window.
    sample_size: int = 0
    compared: int = 0

    @property
    def has_verdict(self) -> bool:
        return self.status == STATUS_OK

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe: a degenerate column can give a NaN statistic, which strict JSON cannot carry."""
        return _finite(asdict(self))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
