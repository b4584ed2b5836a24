"""Adapters to outside systems: MLflow, DVC, the Kubernetes API, Pulumi, AWS, container engines, Prometheus.
May import: config, common, and models (MLflow's view of the classifier); never a domain package.
"""
