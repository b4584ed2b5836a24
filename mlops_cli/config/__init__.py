"""The one typed configuration: `mlops.toml`, the environment and flags, validated when it loads.
May import: mlops_cli.common.
"""
