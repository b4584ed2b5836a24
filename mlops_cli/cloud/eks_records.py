"""What `mlops up --target eks` leaves on disk between runs: the stack's outputs, and the bucket a `down` kept.

The EKS target writes them; the Pulumi program (stacks/program.py) reads the kept bucket to adopt it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config.settings import Config


def recorded_outputs_path(config: Config) -> Path:
    return config.state_dir / "eks" / f"{config.eks.stack}.json"


def kept_bucket_path(config: Config) -> Path:
    """Where `down` notes the bucket it kept, so that the next `up` adopts it instead of failing on its name."""
    return config.state_dir / "eks" / f"{config.eks.stack}.kept-bucket.json"


def kept_bucket(config: Config) -> str:
    path = kept_bucket_path(config)
    return json.loads(path.read_text()).get("bucket", "") if path.is_file() else ""


def recorded_outputs(config: Config) -> dict[str, Any]:
    """What the last successful `mlops up --target eks` recorded (no secrets): {} if never."""
    path = recorded_outputs_path(config)
    return json.loads(path.read_text()) if path.is_file() else {}
