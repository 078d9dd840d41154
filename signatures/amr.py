"""The AMR-Evol stages: modular decomposition, module-aware generation, response evolution; plus the
signatures the baselines and the quality guard use (unit tests, answer repair)."""

from __future__ import annotations

import dspy
from pydantic import BaseModel, Field

__all__ = [
    "ModuleSpec",
    "ModuleCode",
    "ModularDecomposition",
    "ModuleAwareGeneration",
    "ResponseEvolution",
    "UnitTests",
    "RepairResponse",
    "ModuleRegeneration",
    "DescribeModule",
]


class ModuleSpec(BaseModel):
    """A function module as decomposition yields it: a header and a description, no body."""

    name: str = Field(description="The function's name, a valid Python identifier.")
    signature: str = Field(description="The full def line with type hints, e.g. 'def mean(xs: list[float]) -> float:'.")
    description: str = Field(
        description="What it does, its inputs, output and edge cases, precise enough to implement."
    )
    calls: list[str] = Field(default_factory=list, description="Names of the other modules it calls.")


class ModuleCode(BaseModel):
    """A module's implementation."""

    name: str = Field(description="The module's name, as in its spec.")
    code: str = Field(description="The complete Python function definition, imports included.")


class ModularDecomposition(dspy.Signature):  # type: ignore[misc]  # dspy ships no types
    """Decompose the solution of a coding task into small function modules.

    Read the instruction and the draft response, then list the function modules a clean solution needs:
    first the main function that the instruction asks for (keep exactly its name and parameters), then
    each helper it uses. Give every module a def line with type hints and a precise description of what it
    does, its inputs, its output and its edge cases. Do not write function bodies. Simple tasks need only
    one or two modules."""

    instruction: str = dspy.InputField(desc="The coding task.")
    direct_response: str = dspy.InputField(desc="A draft response to the task; it may contain mistakes.")
    modules: list[ModuleSpec] = dspy.OutputField(desc="The main module first, then its helpers.")


class ModuleAwareGeneration(dspy.Signature):  # type: ignore[misc]  # dspy ships no types
    """Implement the function modules of a coding task.

    Write a correct implementation of every listed module, following its def line and description. The
    retrieved modules are verified functions from similar tasks: reuse their ideas where they help, but
    write each module for this task as if you had never seen them."""

    instruction: str = dspy.InputField(desc="The coding task.")
    modules: list[ModuleSpec] = dspy.InputField(desc="The modules to implement, main module first.")
    retrieved_modules: str = dspy.InputField(desc="Verified modules from similar tasks (may be empty).")
    implementations: list[ModuleCode] = dspy.OutputField(desc="One implementation per listed module.")


class ResponseEvolution(dspy.Signature):  # type: ignore[misc]  # dspy ships no types
    """Write the final, improved response to a coding task.

    You are given the task, a draft response that may contain mistakes, the function modules of a modular
    solution, and verified modules from similar tasks. Write a short explanation and then exactly one
    ```python code block with the complete, self-contained solution built from the modules: imports, helper
    functions and the main function with exactly the name and parameters the task asks for. Fix any
    mistake of the draft. Write it as if you had never seen the verified modules. No example usage, no
    input() calls and no tests in the code block."""

    instruction: str = dspy.InputField(desc="The coding task.")
    direct_response: str = dspy.InputField(desc="A draft response; it may contain mistakes.")
    modules: str = dspy.InputField(desc="The solution's function modules: specs or implementations.")
    retrieved_modules: str = dspy.InputField(desc="Verified modules from similar tasks (may be empty).")
    response: str = dspy.OutputField(desc="A short explanation and one complete ```python code block.")


class UnitTests(dspy.Signature):  # type: ignore[misc]  # dspy ships no types
    """Write unit tests for a coding task.

    Write a few (3 to 5) independent Python assert statements that check the required function on typical
    inputs and edge cases, using exactly the function name and parameters that the task asks for. Each
    test is one line such as `assert f(2, 3) == 5`. Derive expected values from the task, not from the
    code shown, since the code may be wrong."""

    instruction: str = dspy.InputField(desc="The coding task, or a function module's spec.")
    code: str = dspy.InputField(desc="A candidate solution (possibly wrong), for the function name and parameters.")
    tests: list[str] = dspy.OutputField(desc="One-line assert statements.")


class RepairResponse(dspy.Signature):  # type: ignore[misc]  # dspy ships no types
    """Repair a response to a coding task that failed a test.

    Given the task, the response and the failing test with its error, write the corrected response: a
    short explanation and one complete ```python code block with the whole fixed solution, keeping the
    function name and parameters the task asks for."""

    instruction: str = dspy.InputField(desc="The coding task.")
    response: str = dspy.InputField(desc="The response whose code failed.")
    failure: str = dspy.InputField(desc="The failing test and its error message.")
    repaired_response: str = dspy.OutputField(desc="A short explanation and one complete ```python code block.")


class ModuleRegeneration(dspy.Signature):  # type: ignore[misc]  # dspy ships no types
    """Rewrite a function module that failed a unit test written from its description.

    Given the coding task, the module's spec, its implementation, the failing test with its error and verified
    modules from similar tasks, write a correct implementation of the module: one complete Python function
    definition with exactly the name and parameters of the spec, its imports included. Reuse the ideas of the
    verified modules where they help."""

    instruction: str = dspy.InputField(desc="The coding task the module belongs to.")
    module: ModuleSpec = dspy.InputField(desc="The module to implement.")
    code: str = dspy.InputField(desc="The implementation that failed.")
    failure: str = dspy.InputField(desc="The failing test and its error message.")
    retrieved_modules: str = dspy.InputField(desc="Verified modules from similar tasks (may be empty).")
    implementation: str = dspy.OutputField(desc="The complete corrected Python function definition.")


class DescribeModule(dspy.Signature):  # type: ignore[misc]  # dspy ships no types
    """Describe in one sentence what this Python function does: its purpose, inputs and result, precisely
    enough that someone could find it again by that description."""

    code: str = dspy.InputField(desc="A Python function.")
    description: str = dspy.OutputField(desc="One plain sentence, no code.")
