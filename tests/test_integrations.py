"""dgprm inside RL trainers: TRL's GRPOTrainer reward function and verl's compute_score."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json

import pytest

import dgprm.integrations.verl as verl_entry
from dgprm.config import RewardConfig, ScoringConfig
from dgprm.integrations.trl import AsyncDGPRMReward, DGPRMReward
from dgprm.llm import LLMClient, ResponseCache
from dgprm.scoring import StepScorer
from dgprm.scoring.solution import ScoringError
from tests.conftest import (
    KeywordEmbedder,
    ScriptedBackend,
    critic_answer,
    judge_by_content,
    openai_stub,
    small_tree,
    step_of,
    user_text,
)


def scripted():
    embedder = KeywordEmbedder(dim=64)
    backend = ScriptedBackend(judge_by_content)
    client = LLMClient(backend, cache=ResponseCache(":memory:"), backoff=0.0)
    return StepScorer(small_tree(embedder), client, embedder, ScoringConfig()), backend


# ---- TRL ------------------------------------------------------------------------------


def test_trl_reward_plain_and_conversational_formats():
    scorer, backend = scripted()
    reward = DGPRMReward(scorer, name="dgprm_prm")
    plain = reward(
        prompts=["What is 2+3?", "What is 2+2?"],
        completions=["Step 1: 2+3 = 5\nStep 2: so 5", "2+2 = 5, which is wrong"],
        completion_ids=[[1, 2], [3]],
        trainer_state=None,  # TRL passes its state and the dataset's columns too
        answer=["5", "4"],
    )
    assert plain == [1.0, 0.222222]
    conversational = reward(
        prompts=[
            [
                {"role": "system", "content": "Reason step by step."},
                {"role": "user", "content": "What is 1+1?"},
            ]
        ],
        completions=[[{"role": "assistant", "content": "1+1 = 2.\n\nThe answer is 2."}]],
    )
    assert conversational == [1.0]
    steps = {step_of(r) for r in backend.requests}
    assert {"2+3 = 5", "so 5", "1+1 = 2.", "The answer is 2."} <= steps
    assert any("What is 1+1?" in user_text(r) for r in backend.requests)
    assert reward.__name__ == "dgprm_prm" and reward.counts["scored"] == 3


def test_trl_reward_gives_none_for_a_failed_completion_counted_and_logged():
    scorer, _ = scripted()
    logged: list[tuple[str, float]] = []
    reward = DGPRMReward(scorer)
    values = reward(
        prompts=["q?", "q?", "q?"],
        completions=["2+3 = 5", "this will fail", "\n\n"],
        log_metric=lambda name, value: logged.append((name, value)),
    )
    assert values == [1.0, None, None]  # TRL leaves None out of the completion's reward
    assert reward.counts == {"completions": 3, "scored": 1, "failed": 2, "fallback": 0}
    assert list(reward.errors) == [
        "step 0: score: unparseable answer: no JSON object in the answer",
        "the response has no steps",
    ]
    assert ("dgprm/failed", pytest.approx(2 / 3)) in logged and ("dgprm/fallback", 0.0) in logged
    fallback = DGPRMReward(scorer, RewardConfig(on_error=0.0))
    assert fallback(prompts=["q?"], completions=["this will fail"]) == [0.0]
    assert fallback.counts["fallback"] == 1


def test_trl_async_reward_is_awaited_by_trl():
    from trl.trainer.utils import get_callable_name, is_async_callable

    scorer, _ = scripted()
    reward = AsyncDGPRMReward(scorer)
    assert is_async_callable(reward) and inspect.iscoroutinefunction(reward.__call__)
    assert get_callable_name(reward) == "dgprm"
    assert not is_async_callable(DGPRMReward(scorer))
    values = asyncio.run(reward(prompts=["q?", "q?"], completions=["2+3 = 5", "it is wrong"]))
    assert values == [1.0, 0.222222]


def test_a_real_trl_grpo_run_takes_the_reward_function_as_it_is(tiny_model, tmp_path):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    scorer, backend = scripted()
    reward = DGPRMReward(scorer)
    prompts = [f"What is {i}+{i}? Answer step by step." for i in range(4)]
    args = GRPOConfig(
        output_dir=str(tmp_path / "grpo"),
        max_steps=2,
        per_device_train_batch_size=2,
        num_generations=2,
        max_completion_length=12,
        learning_rate=1e-4,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        seed=0,
    )
    trainer = GRPOTrainer(
        model=str(tiny_model),
        reward_funcs=[reward],
        args=args,
        train_dataset=Dataset.from_dict({"prompt": prompts}),
    )
    trainer.train()
    assert trainer.state.global_step == 2
    logs = [entry for entry in trainer.state.log_history if "rewards/dgprm/mean" in entry]
    assert len(logs) == 2  # TRL logged dgprm's reward under its __name__ at every step
    assert reward.counts["completions"] == 2 * 2 and backend.requests  # the judge was asked
    scored = reward.counts["scored"] + reward.counts["failed"]
    assert scored == reward.counts["completions"]


# ---- verl -----------------------------------------------------------------------------


def load_as_verl_does():
    """verl's custom_reward_function: import the file at ``path`` and take ``name``."""
    spec = importlib.util.spec_from_file_location("custom_module", verl_entry.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_verl_compute_score_with_verls_signature():
    module = load_as_verl_does()
    scorer, backend = scripted()
    module.configure(scorer, RewardConfig(agg="mean"))
    compute_score = module.compute_score
    score = compute_score(  # how verl's naive reward manager calls it
        data_source="openai/gsm8k",
        solution_str="Step 1: 2+3 = 5\nStep 2: 5 is wrong",
        ground_truth="5",
        extra_info={"split": "train", "index": 0, "question": "What is 2+3?"},
        step=0,
        tokenizer=None,
    )
    assert score == {
        "score": pytest.approx((1.0 + 0.222222) / 2, abs=1e-6),
        "dgprm_steps": 2.0,
        "dgprm_failed_steps": 0.0,
        "dgprm_fallback": 0.0,
    }
    assert all("What is 2+3?" in user_text(r) for r in backend.requests)
    batch = module.compute_score_batch(  # verl's batch reward manager
        data_sources=["a", "b"],
        solution_strs=["2+3 = 5", "2+3 = 6 is wrong"],
        ground_truths=["5", "5"],
        extra_infos=[{"question": "What is 2+3?"}, {"question": "What is 2+3?"}],
    )
    assert [s["score"] for s in batch] == [1.0, 0.222222]
    assert module.stats() == {"responses": 3, "scored": 3, "failed": 0, "fallback": 0}


def test_verl_failures_raise_unless_a_fallback_is_configured():
    module = load_as_verl_does()
    scorer, _ = scripted()
    module.configure(scorer)
    with pytest.raises(ScoringError, match="step 0: score: unparseable answer"):
        module.compute_score("d", "this will fail", "5", {"question": "q?"})
    with pytest.raises(ScoringError, match="extra_info has no question under 'question'"):
        module.compute_score("d", "2+3 = 5", "5", {"problem": "q?"})
    with pytest.raises(ScoringError, match=r"response 1: .* \(2 of 3 failed\)"):
        module.compute_score_batch(
            ["d"] * 3, ["2+3 = 5", "fail", "fail"], [0] * 3, [{"question": "q"}] * 3
        )
    module.configure(scorer, RewardConfig(on_error=-1.0, question_key="problem"))
    fallback = module.compute_score("d", "this will fail", "5", {"problem": "q?"})
    assert fallback["score"] == -1.0 and fallback["dgprm_fallback"] == 1.0
    assert module.stats() == {"responses": 6, "scored": 1, "failed": 4, "fallback": 1}


def test_verl_reads_its_configuration_from_a_file_and_the_environment(tmp_path, monkeypatch):
    module = load_as_verl_does()
    config = tmp_path / "dgprm.toml"
    with openai_stub(critic_answer) as llm:
        config.write_text(
            f'llm = "{llm}"\ncache = "{tmp_path / "c.sqlite"}"\n'
            '[scoring]\nmode = "no-tree"\n[reward]\nagg = "last"\n'
        )
        monkeypatch.setenv("DGPRM_CONFIG", str(config))
        score = module.compute_score("d", "2+3 = 5\nso it is wrong", "5", {"question": "2+3?"})
        assert score["score"] == 0.222222 and score["dgprm_steps"] == 2.0  # the last step's reward
        assert module.usage().llm_calls == 2
    unconfigured = load_as_verl_does()
    monkeypatch.setenv("DGPRM_CONFIG", str(tmp_path / "none.toml"))
    with pytest.raises(Exception, match="no such config file"):
        unconfigured.compute_score("d", "2+3 = 5", "5", {"question": "2+3?"})
    json.dumps(module.stats())  # plain counts, for logs
