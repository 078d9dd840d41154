"""What the BigCodeBench tests share: a library no task can import, and a unittest module for ``task_func = x + 1``."""

FAKE_LIB = "amr_dspy_fake_bcb_lib"  # never installed
PASSING_TEST = """import unittest
class TestCases(unittest.TestCase):
    def test_one(self):
        self.assertEqual(task_func(1), 2)
    def test_two(self):
        self.assertEqual(task_func(2), 3)
"""
