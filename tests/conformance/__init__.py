"""Conformance suite: the app through the real Python worker library (azure-functions-runtime)."""
