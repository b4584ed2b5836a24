"""The Pulumi program behind `mlops up --target eks`, run inline through the Automation API; one component
per concern (program.py lists them). Nothing here imports pulumi at package import time.
May import: cloud, charts and what they may.
"""
