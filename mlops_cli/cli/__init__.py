"""The command-line layer: parse, call the core, render. Nothing here computes anything.
May import: targets and everything beneath them; nothing imports it.
"""
