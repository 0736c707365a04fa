"""Batch jobs: thin `main()`s (arguments, session, read, transform, write) around pure transforms."""
