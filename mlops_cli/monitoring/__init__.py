"""Watching what is served: the prediction log, drift against a version's reference, canary analysis
(`mlops drift`, `deploy --canary`).
May import: registry and what registry may.
"""
