"""Helpers for testing robustnic itself (the test suite and the hardening benchmarks use them).

This package sits above every runtime layer: it may import any of them, and nothing in the runtime
package imports it. :mod:`robustnic.testing.badinputs` is the corpus of hostile inputs.
"""
