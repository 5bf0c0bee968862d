"""The LLM client layer: configuration, a cached, rate-limited, budgeted async client and its ledger.

Everything talks to an OpenAI-compatible ``/v1/chat/completions`` endpoint through the ``openai``
package (OpenAI, Azure OpenAI, vLLM, Ollama, llama.cpp server, or the test server in ``tests``).
"""

from pipelines.llm.config import LLMConfig, llm_configured, load_llm_config

__all__ = ["LLMConfig", "llm_configured", "load_llm_config"]
