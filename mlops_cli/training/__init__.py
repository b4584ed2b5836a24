"""Fit the classifier and judge it: the training run and loop, evaluation, the TF-IDF baseline, the
decision rule and bootstrap intervals (`mlops train`).
May import: data and what data may.
"""
