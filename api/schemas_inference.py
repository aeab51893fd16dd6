"""OpenAI's chat completion and completion requests; fields the engines cannot honour are refused, not ignored."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChatMessage(_Strict):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=1_000_000)


class StreamOptions(_Strict):
    include_usage: bool = False


class _Sampling(_Strict):
    model: str = Field(min_length=1, max_length=512, description="A base model, an ft: fine-tune or a checkpoint.")
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    temperature: float | None = Field(default=None, ge=0, le=2, description="0: greedy decoding.")
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=16)
    stop: str | list[str] | None = Field(default=None, description="Up to 4 sequences that end the completion.")
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    stream: bool = False
    stream_options: StreamOptions | None = None

    # Field validators (not a model validator), so a 400 names the field in `param`.
    @field_validator("stop")
    @classmethod
    def _stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        if isinstance(stop, list) and (len(stop) > 4 or any(not s for s in stop)):
            raise ValueError("at most 4 non-empty sequences")
        return stop

    @field_validator("stream_options")
    @classmethod
    def _with_stream(cls, options: StreamOptions | None, info: ValidationInfo) -> StreamOptions | None:
        if options is not None and not info.data.get("stream"):
            raise ValueError("only allowed with stream: true")
        return options

    def backend_body(self, model: str) -> dict[str, Any]:
        """The body a vLLM-protocol backend gets: this request, addressed to the backend's model name."""
        return {**self.model_dump(exclude_none=True, exclude={"max_completion_tokens"}), "model": model}


class ChatCompletionCreate(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=1_000_000)

    @field_validator("max_completion_tokens")
    @classmethod
    def _one_limit(cls, limit: int | None, info: ValidationInfo) -> int | None:
        given = info.data.get("max_tokens")
        if limit is not None and given is not None and given != limit:
            raise ValueError("give max_tokens or max_completion_tokens, not both")
        return limit

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def backend_body(self, model: str) -> dict[str, Any]:
        body = super().backend_body(model)
        if self.token_limit is not None:
            body["max_tokens"] = self.token_limit
        return body


class CompletionCreate(_Sampling):
    prompt: str | list[str] = Field(description="One prompt, or several (each gets n choices).")

    @field_validator("prompt")
    @classmethod
    def _prompts(cls, prompt: str | list[str]) -> str | list[str]:
        if isinstance(prompt, list) and not 1 <= len(prompt) <= 16:
            raise ValueError("between 1 and 16 prompts")
        return prompt
