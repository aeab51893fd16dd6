"""The dispatcher's per-model check of a stored file: every chat line rendered as training will render it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from core.chat import normalize_messages, normalize_tools
from tests.fixtures.tiny_model import CHAT_TEMPLATE, TOOLS_CHAT_TEMPLATE
from tests.support.chat_records import CHAT, PARTS
from tests.support.chat_records import TOOLS as TOOL_RECORD
from worker.chat_template import ChatTemplate
from worker.datacheck import check_lines

TOOLS = {  # the shared tool record, with a system turn and a weight-0 answer followed by a trained one
    **TOOL_RECORD,
    "messages": [
        {"role": "system", "content": "Be brief."},
        *TOOL_RECORD["messages"][:3],
        {"role": "assistant", "content": "18C and sunny.", "weight": 0},
        {"role": "user", "content": "Thanks"},
        {"role": "assistant", "content": "You are welcome."},
    ],
}
LEGACY = {
    "functions": [{"name": "get_weather", "parameters": {"type": "object"}}],
    "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "function_call": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"role": "function", "name": "get_weather", "content": "18C sunny"},
        {"role": "assistant", "content": "18C and sunny."},
    ],
}
GENERATION_TEMPLATE = (  # transformers' assistant-mask markers, which a plain Jinja environment cannot parse
    "{% for message in messages %}{% if message['role'] == 'assistant' %}{% generation %}"
    "{{ message['content'] | tojson }}{% endgeneration %}{% else %}{{ message['content'] + '<' + bos_token + '>' }}"
    "{% endif %}{% endfor %}"
)


def model_dir(tmp_path: Path, template: str) -> Path:
    """A directory with just the tokenizer files a template is read from."""
    config = {"bos_token": {"content": "<|endoftext|>"}, "eos_token": "<|im_end|>", "chat_template": template}
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    return tmp_path


def lines(*records: dict[str, Any] | str) -> list[bytes]:
    return [(r if isinstance(r, str) else json.dumps(r)).encode() + b"\n" for r in records]


@pytest.mark.parametrize("record", [CHAT, PARTS, TOOLS, LEGACY], ids=["chat", "parts", "tools", "legacy"])
@pytest.mark.parametrize("template", [CHAT_TEMPLATE, TOOLS_CHAT_TEMPLATE, GENERATION_TEMPLATE])
def test_rendering_matches_transformers(
    tiny_model_dir: Path, tmp_path: Path, record: dict[str, Any], template: str
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir, chat_template=template)
    messages, tools = normalize_messages(record["messages"]), normalize_tools(record)
    ours = ChatTemplate.load(model_dir(tmp_path, template))
    assert ours is not None
    try:
        expected = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False)
    except Exception as exc:  # noqa: BLE001 - then ours must fail too
        with pytest.raises(type(exc)):
            ours.render(messages, tools, add_generation_prompt=False)
        return
    assert ours.render(messages, tools, add_generation_prompt=False) == expected


def test_a_tool_file_passes_on_a_tools_template_and_fails_on_a_plain_one(tmp_path: Path) -> None:
    data = lines(CHAT, TOOLS, LEGACY)
    tools = ChatTemplate.load(model_dir(tmp_path / "tools", TOOLS_CHAT_TEMPLATE))
    plain = ChatTemplate.load(model_dir(tmp_path / "plain", CHAT_TEMPLATE))

    assert check_lines(data, tools, "tools-model").invalid == 0
    check = check_lines(data, plain, "plain-model")
    assert [p.line for p in check.problems] == [2, 3]
    assert all("plain-model's chat template does not support tool calling" in p.reason for p in check.problems)
    assert check.message("training file file-x", "plain-model").startswith(
        "training file file-x has 2 lines that cannot be trained on plain-model: line 2: "
    )


def test_a_template_that_drops_tool_calls_is_caught(tmp_path: Path) -> None:
    # Renders every message and never fails, but writes no tool schemas nor calls: training would lose them.
    silent = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] or '' }}\n{% endfor %}"
    check = check_lines(lines(TOOLS), ChatTemplate.load(model_dir(tmp_path, silent)), "m")

    assert check.invalid == 1 and "'get_weather' is not in the rendered conversation" in check.problems[0].reason


def test_lines_a_template_refuses_or_that_hold_a_lone_surrogate_are_named(tmp_path: Path) -> None:
    strict = CHAT_TEMPLATE.replace(
        "{% for message in messages %}",
        "{% for message in messages %}{% if message['role'] == 'developer' %}"
        "{{ raise_exception('developer messages are not supported') }}{% endif %}",
    )
    developer = {"messages": [{"role": "developer", "content": "Be brief."}, *CHAT["messages"]]}
    surrogate = '{"messages": [{"role": "user", "content": "a\\ud800"}, {"role": "assistant", "content": "b"}]}'

    check = check_lines(lines(CHAT, developer, CHAT, surrogate), ChatTemplate.load(model_dir(tmp_path, strict)), "m")

    assert [(p.line, p.reason) for p in check.problems] == [
        (2, "m's chat template cannot render this conversation (TemplateError: developer messages are not supported)"),
        (4, "contains a lone UTF-16 surrogate (\\ud800), which is not text"),
    ]


def test_chat_lines_need_a_template_other_formats_do_not(tmp_path: Path) -> None:
    assert ChatTemplate.load(tmp_path) is None
    assert check_lines(lines({"text": "a"}, {"prompt": "a", "completion": "b"}), None, "m").invalid == 0
    check = check_lines(lines(CHAT, CHAT), None, "m")
    assert [(p.line, p.reason) for p in check.problems] == [
        (1, "m has no chat template; use prompt/completion or text examples")
    ]


def test_conversational_preference_pairs_are_rendered_string_prompts_need_no_template(tmp_path: Path) -> None:
    strict = CHAT_TEMPLATE.replace(
        "{% for message in messages %}",
        "{% for message in messages %}{% if message['role'] == 'developer' %}"
        "{{ raise_exception('developer messages are not supported') }}{% endif %}",
    )
    user = {"role": "user", "content": "Capital of France?"}
    openai = {
        "input": {"messages": [user]},
        "preferred_output": [{"role": "assistant", "content": "Paris."}],
        "non_preferred_output": [{"role": "assistant", "content": "Lyon."}],
    }
    developer = {**openai, "input": {"messages": [{"role": "developer", "content": "Be brief."}, user]}}
    trl = {"prompt": [user], "chosen": openai["preferred_output"], "rejected": openai["non_preferred_output"]}
    plain = {"prompt": "Capital of France?", "chosen": " Paris.", "rejected": " Lyon."}

    check = check_lines(lines(openai, developer, trl, plain), ChatTemplate.load(model_dir(tmp_path, strict)), "m")

    assert [(p.line, p.reason) for p in check.problems] == [
        (2, "m's chat template cannot render this conversation (TemplateError: developer messages are not supported)"),
    ]
    assert check_lines(lines(plain, plain), None, "m").invalid == 0
    assert check_lines(lines(trl), None, "m").problems[0].line == 1
