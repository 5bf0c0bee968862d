"""The LLM client layer against the local OpenAI-compatible server: faults, cache, ledger, budget, key secrecy."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from pydantic import BaseModel

from pipelines.core.warehouse import connect
from pipelines.llm.client import LLMClient
from pipelines.llm.config import LLMConfig, load_llm_config
from pipelines.llm.prompting import block, concepts_block, messages
from pipelines.llm.retry import backoff_delay, parse_retry_after
from pipelines.llm.types import CallSpec, FatalLLMError
from tests.llm_server import LLMTestServer


class CompVerdict(BaseModel):
    id: str
    answer: int


class CompAnswer(BaseModel):
    verdicts: list[CompVerdict]


def _spec(text: str, concepts=("Clarity", "Safety")) -> CallSpec:
    ids = [f"c{i + 1}" for i in range(len(concepts))]
    msgs = messages(
        "comp-v1",
        "compare",
        [
            block("QUERY", "q " + text),
            block("RESPONSE_1", "clarity clarity"),
            block("RESPONSE_2", "clarity"),
            concepts_block([(i, c, "A high score ...") for i, c in zip(ids, concepts)]),
        ],
    )

    def check(p):  # noqa: ANN001, ANN202
        return None if sorted(v.id for v in p.verdicts) == ids else "ids"

    return CallSpec("comp_ab", "comp", "comp-v1", msgs, CompAnswer, item_id="i1", concepts=list(concepts), check=check)


@pytest.fixture
def server():
    with LLMTestServer(hang_s=3.0, retry_after_ms=80) as srv:
        yield srv


@pytest.fixture
def con(tmp_path: Path):
    c = connect(tmp_path / "w.duckdb")
    yield c
    c.close()


def _cfg(srv: LLMTestServer, **kw) -> LLMConfig:
    base = dict(
        base_url=srv.base_url,
        model="test-model",
        backoff_base_s=0.01,
        backoff_max_s=2,
        timeout_s=0.5,
        max_transient_retries=3,
        max_invalid_retries=1,
        prices={"test-model": (1.0, 2.0)},
    )
    base.update(kw)
    return LLMConfig(**base)


def _run(client: LLMClient, specs):
    async def go():
        try:
            return await client.run(specs)
        finally:
            await client.aclose()

    with client:
        out = asyncio.run(go())
    return out


def _ledger_matches_server(con, srv) -> None:
    pt, ct = con.execute(
        "select coalesce(sum(prompt_tokens),0), coalesce(sum(completion_tokens),0) from raw.llm_ledger"
    ).fetchone()
    st = srv.stats()
    assert (pt, ct) == (st["prompt_tokens"], st["completion_tokens"])


def test_ok_call_is_cached_and_rerun_makes_zero_calls(server, con) -> None:
    res = _run(LLMClient(_cfg(server), con), [_spec("plain")])
    assert res[0].ok and res[0].parsed.verdicts[0].answer == 1
    assert server.stats()["requests"] == 1
    res2 = _run(LLMClient(_cfg(server), con), [_spec("plain")])
    assert res2[0].ok and res2[0].from_cache
    assert server.stats()["requests"] == 1  # zero new calls
    row = con.execute("select status, prompt_tokens, completion_tokens, attempts from raw.llm_cache").fetchall()
    assert row[0][0] == "ok" and row[0][3] == 1
    _ledger_matches_server(con, server)
    cost = con.execute("select sum(cost_usd) from raw.llm_ledger").fetchone()[0]
    st = server.stats()
    assert cost == pytest.approx((st["prompt_tokens"] * 1.0 + st["completion_tokens"] * 2.0) / 1e6)


def test_cache_key_changes_with_model_params_and_prompt_version(server, con) -> None:
    c1 = LLMClient(_cfg(server), con)
    s = _spec("x")
    k1 = c1.key_for(s)
    assert LLMClient(_cfg(server, model="other"), con).key_for(s) != k1
    assert LLMClient(_cfg(server, temperature=0.7), con).key_for(s) != k1
    s2 = _spec("x")
    s2.template_version = "comp-v2"
    assert c1.key_for(s2) != k1


@pytest.mark.parametrize("kind", ["429", "500", "503", "malformed", "truncated", "missing", "refusal"])
def test_transient_and_invalid_faults_are_retried_then_succeed(server, con, kind) -> None:
    res = _run(LLMClient(_cfg(server), con), [_spec(f"[[fault:{kind}:1]]")])
    assert res[0].ok, res[0].error
    outcomes = [r[0] for r in con.execute("select outcome from raw.llm_ledger order by attempt").fetchall()]
    assert len(outcomes) == 2 and outcomes[-1] == "ok"
    expected = {
        "429": "http_429",
        "500": "http_500",
        "503": "http_503",
        "malformed": "malformed",
        "truncated": "truncated",
        "missing": "incomplete",
        "refusal": "refusal",
    }[kind]
    assert outcomes[0] == expected
    assert server.stats()["faults"][kind] == 1
    _ledger_matches_server(con, server)


def test_retry_after_is_honoured(server, con) -> None:
    _run(LLMClient(_cfg(server, backoff_base_s=0.001), con), [_spec("[[fault:429:1]]")])
    backoff = con.execute("select backoff_s from raw.llm_ledger where outcome = 'http_429'").fetchone()[0]
    assert backoff >= 0.08  # the server asked for retry-after-ms: 80; our own backoff alone would be ~0.001


def test_retry_after_parsing_and_backoff_growth() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert parse_retry_after({}) is None
    rng = random.Random(0)
    d = [backoff_delay(n, 1.0, 100, None, rng) for n in range(5)]
    assert all(2**n / 2 <= x <= 2**n for n, x in enumerate(d))
    assert backoff_delay(0, 1.0, 100, 30.0, rng) == 30.0
    assert backoff_delay(0, 1.0, 10, 30.0, rng) == 10.0  # capped


def test_hang_hits_client_timeout_and_is_not_retried(server, con) -> None:
    res = _run(LLMClient(_cfg(server, timeout_s=0.3), con), [_spec("[[fault:hang:1]]")])
    assert res[0].status == "failed" and "timeout_s" in res[0].error
    outcomes = [r[0] for r in con.execute("select outcome from raw.llm_ledger order by attempt").fetchall()]
    assert outcomes == ["timeout"]
    _ledger_matches_server(con, server)
    res = _run(LLMClient(_cfg(server, timeout_s=0.3), con), [_spec("[[fault:hang:1]]")])
    assert res[0].ok  # the next run asks again


def test_persistent_invalid_answer_is_recorded_failed_with_raw_text_never_guessed(server, con) -> None:
    res = _run(LLMClient(_cfg(server), con), [_spec("[[fault:malformed:99]]")])
    assert res[0].status == "failed" and res[0].parsed is None
    status, raw, parsed, err, attempts = con.execute(
        "select status, raw_response, parsed_json, error, attempts from raw.llm_cache"
    ).fetchone()
    assert status == "failed" and raw and parsed is None and err.startswith("malformed") and attempts == 2
    # a failed call is retried on the next run (not served from the cache)
    _run(LLMClient(_cfg(server), con), [_spec("[[fault:malformed:99]]")])
    assert server.stats()["requests"] == 4


def test_persistent_5xx_gives_up_after_bounded_retries(server, con) -> None:
    res = _run(LLMClient(_cfg(server, max_transient_retries=2), con), [_spec("[[fault:503:99]]")])
    assert res[0].status == "failed"
    assert server.stats()["requests"] == 3


def test_json_schema_unsupported_falls_back_to_json_mode(con) -> None:
    from pipelines.llm.dialect import forget_dialects

    forget_dialects()
    with LLMTestServer(json_schema=False) as srv:
        client = LLMClient(_cfg(srv), con)
        res = _run(client, [_spec("a"), _spec("b")])
        assert all(r.ok for r in res)
        outcomes = sorted(r[0] for r in con.execute("select outcome from raw.llm_ledger").fetchall())
        assert outcomes.count("ok") == 2 and 1 <= outcomes.count("schema_unsupported") <= 2
        assert client.response_mode == "json_object_schema"  # JSON mode, still with the schema
    forget_dialects()


def test_concurrency_limit_is_respected(con) -> None:
    with LLMTestServer(latency_s=0.05) as srv:
        _run(LLMClient(_cfg(srv, concurrency=3, timeout_s=5), con), [_spec(f"n{i}") for i in range(12)])
        assert srv.stats()["max_in_flight"] <= 3
        assert srv.stats()["requests"] == 12


def test_duplicate_specs_share_one_call(server, con) -> None:
    res = _run(LLMClient(_cfg(server), con), [_spec("same"), _spec("same")])
    assert all(r.ok for r in res) and server.stats()["requests"] == 1


def test_budget_stops_before_exceeding(server, con) -> None:
    cfg = _cfg(server, prices={"test-model": (1000.0, 1000.0)}, max_tokens=100, concurrency=1)
    client = LLMClient(cfg, con, budget_usd=1.0)
    res = _run(client, [_spec(f"b{i}") for i in range(20)])
    spent = con.execute("select sum(cost_usd) from raw.llm_ledger").fetchone()[0] or 0
    assert client.budget_stopped
    assert 0 < sum(r.ok for r in res) < 20 and spent <= 1.0
    assert con.execute("select status from raw.llm_runs").fetchone()[0] == "budget_stopped"


def test_dry_run_calls_nothing(server, con) -> None:
    client = LLMClient(_cfg(server), con, dry_run=True)
    res = _run(client, [_spec("d1"), _spec("d2")])
    assert [r.status for r in res] == ["projected", "projected"]
    assert server.stats()["requests"] == 0 and client.stats.projected_calls == 2
    assert client.stats.projected_cost_usd > 0


def test_rate_limiter_spaces_requests(server, con) -> None:
    client = LLMClient(_cfg(server, rpm=600), con)  # bucket of 600, so no wait for 3 calls: just exercise the path
    res = _run(client, [_spec(f"r{i}") for i in range(3)])
    assert all(r.ok for r in res)


def test_config_from_file_and_env(tmp_path: Path) -> None:
    f = tmp_path / "preflens.toml"
    f.write_text('[llm]\nmodel = "m-file"\nconcurrency = 7\n[llm.prices]\n"m-file" = {input = 1.5, output = 3}\n')
    cfg = load_llm_config(
        f,
        env={
            "MY_KEY": "sk-secret-abc",
            "PREFLENS_LLM_API_KEY_ENV": "MY_KEY",
            "PREFLENS_LLM_BASE_URL": "http://127.0.0.1:9/v1",
        },
    )
    assert cfg.model == "m-file" and cfg.concurrency == 7 and cfg.base_url == "http://127.0.0.1:9/v1"
    assert cfg.api_key == "sk-secret-abc" and "sk-secret-abc" not in repr(cfg)
    assert cfg.price() == (1.5, 3.0, True)
    cfg2 = load_llm_config(f, env={"PREFLENS_LLM_MODEL": "m-env"})
    assert cfg2.model == "m-env" and cfg2.api_key is None


# ---- a real server's behaviour (issue 11): output caps, slow endpoints, response_format dialects, template echoes


def test_max_tokens_is_sized_per_stage_not_4096(server, con) -> None:
    from pipelines.annotate.llm import comp_spec, relevance_spec
    from pipelines.llm_apps.discover.catalog import FIXED_CONCEPTS

    item = {"item_id": "i1", "prompt": "q", "response_a": "clarity clarity", "response_b": "clarity"}
    chunk = list(FIXED_CONCEPTS[:3])
    specs = [relevance_spec(item, chunk), comp_spec(item, chunk, False), _spec("judge-size")]
    seen = []
    for spec in specs:  # one at a time, so the server's log is in this order
        _run(LLMClient(_cfg(server), con), [spec])
        seen.append(server.stats()["max_tokens_seen"][-1])
    assert all(s is not None and s < 4096 for s in seen), seen
    # each cap leaves room for what its schema needs: relevance (12/concept) < comp (40/concept, with explanations)
    assert seen[0] < seen[1]
    assert all(s >= sp.expected_output_tokens for s, sp in zip(seen, specs)), seen


def test_max_tokens_per_stage_is_overridable_and_capped_by_max_tokens(server, con, tmp_path: Path) -> None:
    f = tmp_path / "preflens.toml"
    f.write_text("[llm]\nmodel = 'test-model'\n[llm.stage_max_tokens]\ncomp = 777\nrelevance = 99\n")
    cfg = load_llm_config(f, env={})
    assert cfg.stage_max_tokens == {"comp": 777, "relevance": 99}
    base = _cfg(server, stage_max_tokens=cfg.stage_max_tokens)
    _run(LLMClient(base, con), [_spec("override")])  # template "comp"
    assert server.stats()["max_tokens_seen"] == [777]
    _run(LLMClient(_cfg(server, stage_max_tokens={"comp": 777}, max_tokens=300), con), [_spec("ceiling")])
    assert server.stats()["max_tokens_seen"][-1] == 300  # max_tokens stays the ceiling of every stage
    # a per-stage cap does not change the cache key (an answer cut by its cap is never cached as ok)
    s = _spec("k")
    assert LLMClient(base, con).key_for(s) == LLMClient(_cfg(server), con).key_for(s)
    with pytest.raises(ValueError, match="stage_max_tokens"):
        LLMConfig(model="m", stage_max_tokens={"comp": 0})


def test_a_timeout_is_not_retried_and_says_which_setting_to_raise(con) -> None:
    # one slot, answers slower than the timeout: a retry would only queue behind the abandoned request
    with LLMTestServer(latency_s=0.6, slots=1) as srv:
        res = _run(LLMClient(_cfg(srv, timeout_s=0.2, max_transient_retries=3), con), [_spec("slow")])
        assert res[0].status == "failed"
        assert "timeout_s" in res[0].error and "0.2" in res[0].error
        assert srv.stats()["requests"] == 1  # no retry storm
        outcomes = [r[0] for r in con.execute("select outcome from raw.llm_ledger").fetchall()]
        assert outcomes == ["timeout"]
        err = con.execute("select error from raw.llm_cache").fetchone()[0]
        assert err.startswith("timeout:") and "PREFLENS_LLM_TIMEOUT_S" in err


def test_an_endpoint_slower_than_the_timeout_stops_the_run_with_a_clear_message(con) -> None:
    with LLMTestServer(latency_s=0.5, slots=1) as srv:
        client = LLMClient(_cfg(srv, timeout_s=0.15, max_timeouts=2, concurrency=1), con)
        with pytest.raises(FatalLLMError, match=r"slower than timeout_s = 0\.15 s.*PREFLENS_LLM_TIMEOUT_S"):
            _run(client, [_spec(f"slow{i}") for i in range(6)])
        assert srv.stats()["requests"] == 2  # stopped after max_timeouts, the other 4 never sent
        status, message = con.execute("select status, message from raw.llm_runs").fetchone()
        assert status == "failed" and "timeout_s" in message


def test_timeout_setting_from_the_environment(tmp_path: Path) -> None:
    cfg = load_llm_config(env={"PREFLENS_LLM_TIMEOUT_S": "240"})
    assert cfg.timeout_s == 240.0


def test_llama_cpp_python_dialect_500_on_json_schema_falls_back_to_json_object_with_schema(con) -> None:
    from pipelines.llm.dialect import forget_dialects

    forget_dialects()
    with LLMTestServer(json_schema=False, json_schema_status=500) as srv:
        client = LLMClient(_cfg(srv, concurrency=1), con)
        res = _run(client, [_spec(f"d{i}") for i in range(3)])
        assert all(r.ok for r in res), [r.error for r in res]
        # one 500 may be transient (retried as such); the second steps down, and the rest go in the new dialect
        assert srv.stats()["formats"] == {"json_schema": 2, "json_object+schema": 3}
        assert client.response_mode == "json_object_schema"
        outcomes = [r[0] for r in con.execute("select outcome from raw.llm_ledger order by created_at").fetchall()]
        assert outcomes.count("http_500") == 1 and outcomes.count("schema_unsupported") == 1
        # remembered per endpoint for the run: a second client (another stage) sends no json_schema request
        res2 = _run(LLMClient(_cfg(srv, concurrency=1), con), [_spec("d-next")])
        assert res2[0].ok and srv.stats()["formats"] == {"json_schema": 2, "json_object+schema": 4}
    forget_dialects()


def test_json_mode_only_endpoint_falls_back_to_plain_json_object(con) -> None:
    from pipelines.llm.dialect import forget_dialects

    forget_dialects()
    with LLMTestServer(json_schema=False, object_schema=False) as srv:
        res = _run(LLMClient(_cfg(srv, concurrency=1), con), [_spec("p1"), _spec("p2")])
        assert all(r.ok for r in res)
        formats = srv.stats()["formats"]
        assert formats["json_object"] == 2 and formats["json_schema"] == 1 and formats["json_object+schema"] == 1
    forget_dialects()


def test_a_transient_500_on_a_json_schema_endpoint_keeps_json_schema(server, con) -> None:
    from pipelines.llm.dialect import forget_dialects

    forget_dialects()
    res = _run(LLMClient(_cfg(server, concurrency=1), con), [_spec("[[fault:500:1]]"), _spec("after")])
    assert all(r.ok for r in res)
    assert server.stats()["formats"] == {"json_schema": 3}
    forget_dialects()


def _tag_spec(query: str) -> CallSpec:
    from pipelines.llm_apps.discover.run import _TAG_PROPOSE, TagProposal

    msgs = messages("tag-propose-v1", _TAG_PROPOSE, [block("QUERIES", "- " + query)])
    return CallSpec("tag", "tag-propose", "tag-propose-v1", msgs, TagProposal, expected_output_tokens=60)


def test_an_answer_echoing_the_template_is_rejected_then_retried(server, con) -> None:
    res = _run(LLMClient(_cfg(server), con), [_tag_spec("[[fault:echo:1]] which cooking pan for risotto")])
    assert res[0].ok and "<sub-domain>" not in res[0].parsed.domains
    outcomes = [r[0] for r in con.execute("select outcome from raw.llm_ledger order by attempt").fetchall()]
    assert outcomes == ["invalid", "ok"]


def test_an_answer_that_only_echoes_the_template_is_never_stored_ok(server, con) -> None:
    res = _run(LLMClient(_cfg(server), con), [_tag_spec("[[fault:echo:99]] which cooking pan for risotto")])
    assert res[0].status == "failed" and res[0].parsed is None
    status, err, raw = con.execute("select status, error, raw_response from raw.llm_cache").fetchone()
    assert status == "failed" and "<sub-domain>" in raw
    assert err.startswith("invalid: ") and "template" in err


def test_labels_without_a_letter_are_rejected(server, con) -> None:
    res = _run(LLMClient(_cfg(server), con), [_tag_spec("[[fault:digits:99]] which cooking pan for risotto")])
    assert res[0].status == "failed" and "1234567890" in (res[0].raw or "")


def test_every_template_placeholder_is_found() -> None:
    from pipelines.annotate.llm import comp_spec, relevance_spec, score_joint_spec
    from pipelines.llm.answers import placeholders
    from pipelines.llm_apps.discover.catalog import FIXED_CONCEPTS

    item = {"item_id": "i1", "prompt": 'q <b>bold</b> "<x>"', "response_a": '"<sub-domain>"', "response_b": "b"}
    chunk = list(FIXED_CONCEPTS[:2])
    assert placeholders(_tag_spec("q")) == {"<sub-domain>", "<task type>"}
    assert placeholders(comp_spec(item, chunk, False)) == {"<concept id>", "<one sentence>"}
    assert placeholders(relevance_spec(item, chunk)) == {"<concept id>"}  # data blocks never count
    assert "<one sentence>" in placeholders(score_joint_spec(item, chunk))


def test_the_schema_sent_bounds_the_answer_to_one_entry_per_id(server, con) -> None:
    # a grammar-constrained server (llama.cpp) turns the schema into a grammar: with the ids as an enum and exactly
    # n entries, SmolLM2-135M can no longer run on past the last concept until its output cap
    from pipelines.annotate.llm import EXPLANATION_MAX_CHARS, comp_spec
    from pipelines.llm_apps.discover.catalog import FIXED_CONCEPTS

    item = {"item_id": "i1", "prompt": "q", "response_a": "clarity clarity", "response_b": "clarity"}
    res = _run(LLMClient(_cfg(server), con), [comp_spec(item, list(FIXED_CONCEPTS[:3]), False)])
    assert res[0].ok
    schema = server.stats()["last_response_format"]["json_schema"]["schema"]
    verdicts = schema["properties"]["verdicts"]
    assert verdicts["minItems"] == verdicts["maxItems"] == 3
    entry = schema["$defs"]["CompVerdict"]["properties"]
    assert entry["id"]["enum"] == ["c1", "c2", "c3"]
    assert entry["explanation"]["maxLength"] == EXPLANATION_MAX_CHARS


def test_a_definition_that_only_repeats_the_form_to_fill_in_is_an_echo() -> None:
    # SmolLM2-135M on llama.cpp answered the define template with the form itself, ellipses included
    from pipelines.llm.answers import template_echo
    from pipelines.llm_apps.discover.run import _DEFINE, DefineAnswer

    spec = CallSpec(
        "define", "define", "define-v1", messages("define-v1", _DEFINE, [block("CONCEPTS", "[]")]), DefineAnswer
    )
    echo = {
        "definitions": [
            {"id": "c1", "definition": "A high score indicates the response...; A low score indicates the response..."}
        ]
    }
    real = {
        "definitions": [
            {
                "id": "c1",
                "definition": "A high score indicates the response is clear; A low score indicates the response is vague",
            }
        ]
    }
    assert template_echo(spec, echo) and "placeholder" in template_echo(spec, echo)
    assert template_echo(spec, real) is None
