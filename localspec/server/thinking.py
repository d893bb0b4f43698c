"""Whether a chat template's model thinks before it answers, and whether a
request's prompt opens its reasoning (localspec/reasoning.py).

A template that writes <think> anywhere (to show or drop the reasoning of
earlier turns, or to open it for the reply) belongs to a model that reasons
that way. Whether the reply begins inside the tag depends on the template's
variables (enable_thinking), so the generation prompt is rendered once for
each set of them a client sends.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from localspec.reasoning import END, START, Reasoning

_PROBE = [{"role": "user", "content": "hi"}]


class TemplateThinking:
    def __init__(self, template: str | None):
        self.template = template
        self.thinks = bool(template) and (START in template or END in template)
        self._opens = lru_cache(maxsize=64)(self._opens_uncached)

    def reasoning(self, template_kwargs: dict[str, Any]) -> Reasoning | None:
        """How a reply rendered with these variables may reason; None for a model that does not."""
        if not self.thinks:
            return None
        return Reasoning(open=self._opens(json.dumps(template_kwargs, sort_keys=True)))

    def _opens_uncached(self, kwargs_json: str) -> bool:
        formatter = Jinja2ChatFormatter(template=self.template, eos_token="", bos_token="", add_generation_prompt=True)
        try:
            prompt = formatter(messages=_PROBE, **json.loads(kwargs_json)).prompt
        except Exception:  # a template may refuse the probe; the request's own render says why
            return False
        return prompt.rstrip().endswith(START)
