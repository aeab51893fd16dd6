"""One base model loaded once; PEFT adapters loaded by name, switched per request, least recently used unloaded."""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from queue import Queue
from typing import Any

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer


class EngineError(Exception):
    """A request the engine refuses: `status` (400, 404) and the parameter at fault."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


@dataclass(frozen=True)
class Sampling:
    max_tokens: int | None
    temperature: float
    top_p: float
    seed: int | None
    stop: tuple[str, ...]


@dataclass
class Piece:
    """A streamed piece of one completion: new text, and at the end the finish reason and token count."""

    text: str
    finish_reason: str | None = None
    completion_tokens: int = 0


class _Tokens(BaseStreamer):
    """Receives generated token ids from generate() (in its thread) and hands them to the consumer."""

    def __init__(self, out: Queue[list[int] | None], skip_prompt: bool = True) -> None:
        self.out, self.skip_prompt = out, skip_prompt

    def put(self, value: torch.Tensor) -> None:
        if self.skip_prompt:  # the first put() is the prompt itself
            self.skip_prompt = False
            return
        self.out.put([int(t) for t in value.reshape(-1).tolist()])

    def end(self) -> None:
        self.out.put(None)


class _StopFlag(StoppingCriteria):
    """Lets the consumer stop generation early, once a stop string appeared in the decoded text."""

    def __init__(self) -> None:
        self.stop = threading.Event()

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.stop.is_set(), dtype=torch.bool, device=input_ids.device)


class Engine:
    """Generation is serialized by one lock that also covers the adapter switch: no request sees another's weights."""

    def __init__(self, name: str, path: str | Path, device: str, max_adapters: int, max_new_tokens: int) -> None:
        self.name, self.device, self.max_adapters, self.max_new_tokens = name, device, max_adapters, max_new_tokens
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.base = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map={"": device})
        self.base.eval()  # type: ignore[no-untyped-call]  # transformers leaves eval() unannotated
        self.context = int(getattr(self.base.config, "max_position_embeddings", 2048))
        self.peft: PeftModel | None = None
        self.adapters: OrderedDict[str, str] = OrderedDict()  # lora name → PEFT adapter name, LRU first
        self._ids = itertools.count(1)
        self.lock = threading.Lock()

    def loaded(self) -> list[str]:
        """Loaded lora names, least recently used first."""
        return list(self.adapters)

    def load(self, lora_name: str, directory: Path) -> bool:
        """Load an adapter as `lora_name` (False if already loaded); unload the least recently used past the limit."""
        with self.lock:
            if lora_name in self.adapters:
                return False
            # PEFT keys adapters into module dicts, where "." and ":" (in every ft: name) are not allowed.
            internal = f"a{next(self._ids)}"
            if self.peft is None:
                self.peft = PeftModel.from_pretrained(self.base, directory, adapter_name=internal).eval()
            else:
                self.peft.load_adapter(directory, adapter_name=internal)
            self.adapters[lora_name] = internal
            while len(self.adapters) > self.max_adapters:
                self._unload(next(iter(self.adapters)))
            return True

    def unload(self, lora_name: str) -> None:
        with self.lock:
            if lora_name not in self.adapters:
                raise EngineError(404, f"adapter {lora_name!r} is not loaded", "lora_name")
            self._unload(lora_name)

    def _unload(self, lora_name: str) -> None:
        internal = self.adapters.pop(lora_name)
        assert self.peft is not None
        if not self.adapters:  # PEFT cannot delete its last adapter: drop the wrapper, the base stays clean
            self.base, self.peft = self.peft.unload(), None
            return
        if self.peft.active_adapter == internal:
            self.peft.set_adapter(next(iter(self.adapters.values())))
        self.peft.delete_adapter(internal)

    def served(self, model: str) -> str | None:
        """The PEFT adapter behind an OpenAI model name (None: the base); unknown names are a 404, as in vLLM."""
        if model == self.name:
            return None
        if model not in self.adapters:
            raise EngineError(404, f"The model `{model}` does not exist.", "model")
        return self.adapters[model]

    def chat_prompt(self, messages: list[dict[str, Any]]) -> list[int]:
        ids: Any = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):  # some versions return a BatchEncoding
            ids = ids["input_ids"]
        return [int(i) for i in ids]

    def text_prompt(self, prompt: str) -> list[int]:
        return [int(i) for i in self.tokenizer(prompt)["input_ids"]]

    def budget(self, prompt: list[int], max_tokens: int | None, param: str) -> int:
        """Tokens this completion may generate; a prompt past the context is a 400, as vLLM answers."""
        room = self.context - len(prompt)
        if max_tokens is None:
            if room < 1:
                raise EngineError(400, self._too_long(len(prompt), 1), param)
            return min(room, self.max_new_tokens)
        if max_tokens > room:
            raise EngineError(400, self._too_long(len(prompt), max_tokens), param)
        return min(max_tokens, self.max_new_tokens)

    def _too_long(self, prompt: int, wanted: int) -> str:
        return (
            f"This model's maximum context length is {self.context} tokens. However, you requested "
            f"{prompt + wanted} tokens ({prompt} in the messages, {wanted} in the completion)."
        )

    def generate(self, model: str, prompt: list[int], budget: int, sampling: Sampling) -> Iterator[Piece]:
        """Stream one completion's text; the last piece carries the finish reason and the token count."""
        adapter = self.served(model)
        tokens: Queue[list[int] | None] = Queue()
        flag = _StopFlag()
        failure: list[BaseException] = []
        thread = threading.Thread(
            target=self._run, args=(adapter, prompt, budget, sampling, tokens, flag, failure), daemon=True
        )
        thread.start()
        try:
            for piece in self._pieces(tokens, sampling.stop, flag):
                if piece.finish_reason is not None and failure:  # the generating thread failed
                    raise failure[0]
                yield piece
        finally:
            flag.stop.set()  # a client that went away stops its generation (and frees the lock) early
            thread.join()

    def _pieces(self, tokens: Queue[list[int] | None], stops: tuple[str, ...], flag: _StopFlag) -> Iterator[Piece]:
        generated: list[int] = []
        sent = ""
        finish = "length"
        count = 0  # tokens generated, the end-of-sequence token included (as vLLM counts them)
        while (ids := tokens.get()) is not None:
            generated += ids
            count += len(ids)
            if self.tokenizer.eos_token_id in ids:
                count -= len(generated) - generated.index(self.tokenizer.eos_token_id) - 1
                generated = generated[: generated.index(self.tokenizer.eos_token_id)]
                finish = "stop"
            text = str(self.tokenizer.decode(generated, skip_special_tokens=True))
            cut = _first_stop(text, stops)
            if cut is not None:
                text, finish = text[:cut], "stop"
                flag.stop.set()
            if text.endswith("\ufffd") and finish == "length" and cut is None:
                continue  # half a UTF-8 character: wait for the rest
            if len(text) > len(sent) and text.startswith(sent):
                yield Piece(text[len(sent) :])
                sent = text
            if finish == "stop":
                flag.stop.set()
                break
        yield Piece("", finish_reason=finish, completion_tokens=count)

    def _run(
        self,
        adapter: str | None,
        prompt: list[int],
        budget: int,
        sampling: Sampling,
        out: Queue[list[int] | None],
        flag: _StopFlag,
        failure: list[BaseException],
    ) -> None:
        try:
            with self.lock:
                model = self._select(adapter)
                self._touch(adapter)
                if sampling.seed is not None:
                    torch.manual_seed(sampling.seed)  # under the lock: no other request draws from the RNG
                greedy = sampling.temperature == 0
                # OpenAI's sampling has no top-k: 0 turns off the model's generation_config default (often 50).
                kwargs: dict[str, Any] = (
                    {} if greedy else {"temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": 0}
                )
                ids = torch.tensor([prompt], device=self.device)
                with torch.inference_mode(), _disabled(self.peft, adapter is None):
                    model.generate(
                        input_ids=ids,
                        attention_mask=torch.ones_like(ids),
                        max_new_tokens=budget,
                        do_sample=not greedy,
                        streamer=_Tokens(out),
                        stopping_criteria=StoppingCriteriaList([flag]),
                        pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                        **kwargs,
                    )
        except BaseException as exc:  # surfaced by the consumer
            failure.append(exc)
            out.put(None)

    def _select(self, adapter: str | None) -> Any:
        if self.peft is None:
            return self.base
        if adapter is not None:
            self.peft.set_adapter(adapter)
        return self.peft

    def _touch(self, adapter: str | None) -> None:
        for name, internal in self.adapters.items():
            if internal == adapter:
                self.adapters.move_to_end(name)
                return


class _disabled:
    """The base model's own answer while adapters are loaded: PEFT's disable_adapter(), or nothing to disable."""

    def __init__(self, peft: PeftModel | None, disable: bool) -> None:
        self.ctx = peft.disable_adapter() if peft is not None and disable else None

    def __enter__(self) -> None:
        if self.ctx is not None:
            self.ctx.__enter__()

    def __exit__(self, *exc: Any) -> None:
        if self.ctx is not None:
            self.ctx.__exit__(*exc)


def _first_stop(text: str, stops: tuple[str, ...]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None
