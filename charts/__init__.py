"""Kubernetes objects for the platform, rendered from the typed config, one module per component (no Helm):
`platform.platform_steps` is `mlops up`'s install order, `inference_service.render` what `mlops deploy` applies.
May import: config, common, registry (the predictor's arguments) and what they may.
"""
