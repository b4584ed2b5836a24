"""Kubernetes objects for the platform, rendered from the typed config: one module per component.

`charts.platform.platform_steps(config, secrets)` is the install order of `mlops up --target kubernetes`;
each step's objects are applied together and waited on (CRDs Established, Deployments Available)
before the next. `charts.inference_service.render(...)` is what `mlops deploy` applies.
No Helm or kubectl is involved.
"""
