"""The LLM client layer: configuration, a cached, rate-limited, budgeted async client and its ledger.

Everything talks to an OpenAI-compatible ``/v1/chat/completions`` endpoint through the ``openai``
package (OpenAI, Azure OpenAI, vLLM, Ollama, llama.cpp server, or the test server in ``tests``).

* ``config``: settings (``preflens.toml`` < environment), prices;
* ``types``: call specs and results, one HTTP attempt, run statistics, errors;
* ``prompting``: untrusted text as data blocks, entry ids, chunking;
* ``answers``: the response format, validation of an answer, id checks;
* ``limits``: token estimate, RPM/TPM rate limiter, dollar budget;
* ``retry``: which outcomes are retried, Retry-After, backoff with jitter;
* ``store``: ``raw.llm_runs``, ``raw.llm_cache``, ``raw.llm_ledger`` and the writer thread;
* ``client``: :class:`~pipelines.llm.client.LLMClient`, which puts these together for one command run;
* ``report``: the part of a command's report that comes from its client run.
"""

from pipelines.llm.config import LLMConfig, llm_configured, load_llm_config

__all__ = ["LLMConfig", "llm_configured", "load_llm_config"]
