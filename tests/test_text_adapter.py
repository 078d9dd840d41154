"""TextAdapter: text-to-text signatures as plain conversations, every other signature as ChatAdapter sends it."""

from __future__ import annotations

import dspy
import pytest
from dspy.utils import DummyLM
from dspy.utils.exceptions import AdapterParseError

from amr_dspy.programs import build_program
from amr_dspy.teacher import TeacherSpec
from amr_dspy.text_adapter import TextAdapter, is_text_signature
from signatures import DescribeModule, DirectResponse, UnitTests

ANSWER = "Sum them.\n```python\ndef add(a, b):\n    return a + b\n```"


def test_text_signatures_are_one_str_in_one_str_out() -> None:
    assert is_text_signature(DirectResponse) and is_text_signature(DescribeModule)
    assert not is_text_signature(UnitTests)  # two inputs, a list output
    assert not is_text_signature(dspy.ChainOfThought(DirectResponse).predict.signature)  # reasoning + response


def test_a_text_signature_is_a_plain_conversation_with_its_demos_as_turns() -> None:
    demos = [{"instruction": "Write add.", "response": ANSWER}, {"instruction": "Half a demo."}]
    messages = TextAdapter().format(DirectResponse, demos, {"instruction": "Write mul(a, b)."})
    assert messages == [
        {"role": "user", "content": f"{DirectResponse.instructions}\n\nWrite add."},
        {"role": "assistant", "content": ANSWER},
        {"role": "user", "content": "Write mul(a, b)."},
    ]
    assert "[[ ##" not in str(messages)


def test_without_demos_the_instructions_lead_the_one_user_message() -> None:
    messages = TextAdapter().format(DescribeModule, [], {"code": "def f(): pass"})
    assert messages == [{"role": "user", "content": f"{DescribeModule.instructions}\n\ndef f(): pass"}]


def test_other_signatures_keep_chat_adapters_field_markers() -> None:
    inputs = {"instruction": "Write add.", "code": ANSWER}
    assert TextAdapter().format(UnitTests, [], inputs) == dspy.ChatAdapter().format(UnitTests, [], inputs)
    completion = '[[ ## tests ## ]]\n["assert add(1, 2) == 3"]\n\n[[ ## completed ## ]]'
    assert TextAdapter().parse(UnitTests, completion) == {"tests": ["assert add(1, 2) == 3"]}


def test_the_whole_reply_is_the_output_without_chat_markers() -> None:
    adapter = TextAdapter()
    assert adapter.parse(DirectResponse, ANSWER) == {"response": ANSWER}
    marked = f"[[ ## response ## ]]\n{ANSWER}\n\n[[ ## completed ## ]]"  # as demos compiled under ChatAdapter teach
    assert adapter.parse(DirectResponse, marked) == {"response": ANSWER}
    with pytest.raises(AdapterParseError):
        adapter.parse(DirectResponse, "  \n")


def test_direct_program_answers_through_the_text_adapter() -> None:
    lm = DummyLM([{"response": ANSWER}])
    with dspy.context(lm=lm, adapter=TextAdapter(use_json_adapter_fallback=False)):
        prediction = build_program("direct")(instruction="Write add(a, b).", entry_point="add")
    assert prediction.code.strip() == "def add(a, b):\n    return a + b"
    sent = lm.history[-1]["messages"]
    assert sent == [{"role": "user", "content": f"{DirectResponse.instructions}\n\nWrite add(a, b)."}]


def test_teachers_default_to_the_text_adapter() -> None:
    assert type(TeacherSpec.parse("local").make_adapter()) is TextAdapter
    assert type(TeacherSpec.parse("openai/gpt-4o-mini").make_adapter()) is TextAdapter
    assert type(TeacherSpec.parse("local", adapter="chat").make_adapter()) is dspy.ChatAdapter


def test_a_framed_stub_goes_without_the_signatures_instructions() -> None:
    from amr_dspy.framing import frame_instruction, insist_on_body

    stub = 'def add(a, b):\n    """Return a + b."""\n'
    framed = frame_instruction(stub, "add")
    demos = [{"instruction": "Write mul.", "response": ANSWER}]
    assert TextAdapter().format(DirectResponse, [], {"instruction": framed}) == [{"role": "user", "content": framed}]
    amended = insist_on_body(framed, {"add"})  # the re-ask after a hollow answer
    assert TextAdapter().format(DirectResponse, demos, {"instruction": amended}) == [
        {"role": "user", "content": "Write mul."},
        {"role": "assistant", "content": ANSWER},
        {"role": "user", "content": amended},
    ]
    prose = "Implement the Python function `add`: return a + b."  # prose that merely mentions a function
    assert DirectResponse.instructions in TextAdapter().format(DirectResponse, [], {"instruction": prose})[0]["content"]


def test_for_a_stub_direct_sends_the_plain_prompts_request() -> None:
    from tests.plain_teacher import PlainTeacher

    stub = 'def add(a, b):\n    """Return a + b."""\n'
    sent = []
    for variant in ("direct", "direct-plain"):
        lm = PlainTeacher(ANSWER)
        with dspy.context(lm=lm, adapter=TextAdapter(use_json_adapter_fallback=False)):
            prediction = build_program(variant)(instruction=stub, entry_point="add")
        assert "return a + b" in prediction.code
        sent.append(lm.sent)
    assert sent[0] == sent[1] and len(sent[0]) == 1  # the same one message: direct cannot do worse than it
