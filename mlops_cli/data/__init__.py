"""The review dataset: packaged corpora, a user's file, splits, and its versions in DVC (`mlops data`).
May import: config, common, adapters, models.
"""
