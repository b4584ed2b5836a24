"""mlops: one command for a review-sentiment MLOps platform."""

__version__ = "0.1.0"
__all__ = ["__version__"]
