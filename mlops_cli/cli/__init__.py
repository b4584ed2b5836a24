"""The command-line layer: parse, call the core, render. Nothing here computes anything."""
