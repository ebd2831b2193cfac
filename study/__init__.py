"""What to run: the study spec, its cells, data sets, teachers and corpora, launching and resuming.

Kept free of Ray imports at package level so that `analysis` can read the spec types in a plain
notebook.
"""
