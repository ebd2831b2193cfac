"""The launcher and the command line: the one place that knows Tune, trainables and analysis together."""
