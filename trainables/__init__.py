"""How one cell runs: corpus -> tokenize -> Ray Train fine-tune -> evaluate -> result."""
