"""autobert's conformance suite, run against this package's technique.

Run with ``pytest`` from this folder after ``pip install -e .``.
"""

from autobert.testing import TechniqueConformance


class TestLabelSmoothing(TechniqueConformance):
    technique = "label_smoothing"
