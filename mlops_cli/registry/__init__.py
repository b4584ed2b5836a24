"""Model versions: registering, aliases and the gate, and what a version carries for serving and drift
(`mlops register|promote|evaluate`).
May import: training and what training may.
"""
