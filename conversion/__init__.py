"""Scripts that build and convert X-Cross checkpoints; each is runnable with --help and importable."""
