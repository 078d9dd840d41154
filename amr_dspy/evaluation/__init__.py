"""Benchmark evaluation: run a program (or read a samples file), check every solution, report evalplus pass@1.

A solution is checked as ``evalplus.evaluate`` checks it: the base inputs in one fresh run, then the
plus inputs in another, each stopping at its first failure. Base pass = all base tests pass; plus
pass = base and plus all pass. ``crosscheck_evalplus`` runs evalplus itself on the same samples so
the two numbers can be compared side by side.

BigCodeBench tasks have one unittest module and no plus tests (base = plus): a task passes when every test
method passes. A task whose run needed a library that is not installed is *skipped*, and one on the exclusion
list (``amr_dspy.bigcodebench``) *excluded*; both are counted and listed, and left out of pass@1's denominator.

The package, one module per concept: ``results`` (the schema), ``checking`` (solutions in the sandbox), ``runner``
(running a program), ``program_run`` (a checkpointed run with a progress bar, as eval and compare do it), ``files``
(samples and results files), ``recheck`` (a finished run re-read with today's extraction), ``crosscheck`` (evalplus
on the same samples), ``sandbox_bench`` (the sandbox against evalplus's checker) and ``tables`` (rendering).
"""

from __future__ import annotations

from amr_dspy.evaluation.checking import bigcodebench_limits, check_solutions, evalplus_limits, execution_limits
from amr_dspy.evaluation.crosscheck import crosscheck_evalplus
from amr_dspy.evaluation.files import read_results, read_samples, write_results, write_samples
from amr_dspy.evaluation.program_run import run_program_tasks
from amr_dspy.evaluation.results import (
    CrossCheck,
    EvalResults,
    Failure,
    PassAt1,
    SolutionCheck,
    TaskResult,
    package_versions,
)
from amr_dspy.evaluation.runner import (
    evaluate_program,
    evaluate_samples,
    program_config,
    raise_if_all_failed,
    run_parallel,
)
from amr_dspy.evaluation.sandbox_bench import BenchSide, SandboxBench, bench_sandbox, bench_table
from amr_dspy.evaluation.tables import left_out_summary, results_table, summary_table

__all__ = [
    "Failure",
    "PassAt1",
    "TaskResult",
    "CrossCheck",
    "EvalResults",
    "SolutionCheck",
    "check_solutions",
    "evalplus_limits",
    "bigcodebench_limits",
    "execution_limits",
    "evaluate_program",
    "run_program_tasks",
    "run_parallel",
    "program_config",
    "evaluate_samples",
    "read_results",
    "read_samples",
    "write_samples",
    "write_results",
    "crosscheck_evalplus",
    "results_table",
    "summary_table",
    "left_out_summary",
    "raise_if_all_failed",
    "BenchSide",
    "SandboxBench",
    "bench_sandbox",
    "bench_table",
    "package_versions",
]
