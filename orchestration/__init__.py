"""Composition roots: the step registry, the native pipeline runner, the native stack and the `lakehouse` CLI."""
