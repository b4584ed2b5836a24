"""The local platform's processes (supervisord, restart policy, Prometheus), `mlops doctor`, batch
scoring and what `down --purge` deletes.
May import: data and what data may."""
