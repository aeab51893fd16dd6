"""A model's chat template rendered as transformers renders it, with Jinja alone (the dispatcher has no torch).

Same environment as `transformers.utils.chat_template_utils`: sandboxed, `trim_blocks`/`lstrip_blocks`, loop
controls, a `tojson` that does not HTML-escape, `raise_exception`, `strftime_now`, `{% generation %}` blocks, and the
tokenizer's special tokens as variables. tests/worker/test_chat_template.py checks it against `apply_chat_template`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

_SPECIAL = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


class _Generation(jinja2.ext.Extension):
    """`{% generation %}…{% endgeneration %}` (transformers' assistant-mask markers) renders its body."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller: Any) -> str:
        return str(caller())


def _tojson(
    x: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None, sort_keys: bool = False
) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _raise(message: str) -> None:
    raise jinja2.TemplateError(message)


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_Generation, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


@dataclass
class ChatTemplate:
    """A model's default template (and its `tool_use` one, when it has one) with its special tokens."""

    default: jinja2.Template
    tool_use: jinja2.Template | None
    special_tokens: dict[str, str]
    source: str  # the default template's text (to tell whether it mentions tools)

    @classmethod
    def load(cls, model_dir: Path) -> ChatTemplate | None:
        """The template a model directory declares (chat_template.jinja or tokenizer_config.json), or None."""
        config = _read_json(model_dir / "tokenizer_config.json")
        templates: dict[str, str] = {}
        declared = config.get("chat_template")
        if isinstance(declared, str):
            templates["default"] = declared
        elif isinstance(declared, list):  # [{"name": "default", "template": "..."}, {"name": "tool_use", ...}]
            templates.update({t["name"]: t["template"] for t in declared if isinstance(t, dict) and "name" in t})
        if (file := model_dir / "chat_template.jinja").is_file():
            templates["default"] = file.read_text(encoding="utf-8")
        for extra in sorted((model_dir / "additional_chat_templates").glob("*.jinja")):
            templates[extra.stem] = extra.read_text(encoding="utf-8")
        if "default" not in templates:
            return None
        tokens = {**_read_json(model_dir / "special_tokens_map.json"), **config}
        special = {name: _token_text(tokens[name]) for name in _SPECIAL if tokens.get(name) is not None}
        env = _environment()
        tool_use = env.from_string(templates["tool_use"]) if "tool_use" in templates else None
        return cls(env.from_string(templates["default"]), tool_use, special, templates["default"])

    def render(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, *, add_generation_prompt: bool
    ) -> str:
        """The conversation's text; raises what the template raises (TemplateError, TypeError, …)."""
        template = self.tool_use if tools and self.tool_use is not None else self.default
        return template.render(
            messages=messages,
            tools=tools,
            documents=None,
            add_generation_prompt=add_generation_prompt,
            **self.special_tokens,
        )


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    value = json.loads(path.read_text(encoding="utf-8"))
    return value if isinstance(value, dict) else {}


def _token_text(token: Any) -> str:
    return str(token["content"]) if isinstance(token, dict) else str(token)
