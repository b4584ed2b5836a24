"""mlops: one command for a review-sentiment MLOps platform. Holds the version; imports nothing.
The tree is the map: README "Repository layout" says where a change goes, tests/test_layers.py what may import what.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
