"""The core of a study: spec, cells, storage, result schema, data sets and scoring, prompts, corpora.

The bottom layer: it imports neither Ray nor torch, and nothing above it.
"""
