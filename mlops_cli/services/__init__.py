"""Long-running services, each started with `python -m`: the gateway, the drift monitor, the local healer.
May import: monitoring, platform and what they may.
"""
