"""`preflens evaluate`: the paper's evaluation protocols over the annotated pairs."""
