"""Model placement (--device / PROBELENS_DEVICE) and bfloat16.

There is no GPU here, so the engine's bfloat16 path is tested on the CPU (torch runs bfloat16
there, slowly): the tiny model loaded in bfloat16 behaves as a GPU's model does. The float32
path keeps its 1e-4 contract in tests/test_model.py and tests/test_batched_engine.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.base import settings
from core.base.decoding import DecodingSettings
from core.base.errors import UserError
from core.base.types import Generation
from core.engine import model as model_module
from core.engine.activations import ActivationCache, extract_activations, model_key
from core.engine.batched import GenerationRequest, generate_batched
from core.engine.model import (
    SCORE_TOLERANCE,
    check_dtype,
    default_dtype,
    load_model,
    resolve_device,
    score_tolerance,
)
from core.engine.scoring import score_conversation
from core.engine.stream import TokenStream
from core.probes.linear import LinearProbe

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
MESSAGES = [{"role": "user", "content": "Tell me about Lviv 🙂 and 東京."}]
PROMPTS = [
    "Hi",
    "The capital of France is",
    "Paris is the capital of France and Berlin is the capital of Germany. " * 3,
    "A",
    "Tell me about the history of the city, its rivers and its bridges",
    "x " * 20,
]
BF16_TOLERANCE = score_tolerance(torch.bfloat16)


# --- the device setting --------------------------------------------------------------------------


@NO_GPU
def test_auto_means_the_cpu_on_a_machine_without_a_gpu(monkeypatch):
    monkeypatch.delenv("PROBELENS_DEVICE", raising=False)
    assert settings.device() == "auto"
    assert resolve_device() == torch.device("cpu")
    assert resolve_device("auto") == resolve_device(" CPU ") == torch.device("cpu")
    monkeypatch.setenv("PROBELENS_DEVICE", "cpu")
    assert resolve_device() == torch.device("cpu")


@pytest.mark.parametrize("bad", ["gpu", "cuda:", "cuda:x", "cuda0", "cuda:-1", "cpu:0", "tpu", "mps", "auto,cpu"])
def test_bad_device_strings_are_refused_with_one_message(bad, monkeypatch):
    with pytest.raises(UserError, match=r"device must be auto, cpu, cuda or cuda:N .*--device / PROBELENS_DEVICE"):
        resolve_device(bad)
    monkeypatch.setenv("PROBELENS_DEVICE", bad)
    with pytest.raises(UserError, match="device must be auto, cpu, cuda or cuda:N"):
        resolve_device()


@NO_GPU
@pytest.mark.parametrize("asked", ["cuda", "cuda:0"])
def test_a_gpu_that_is_not_there_is_refused(asked):
    with pytest.raises(UserError, match=r"asked for, but .*use --device cpu"):
        resolve_device(asked)


def test_a_gpu_number_beyond_the_gpus_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    assert resolve_device("cuda") == torch.device("cuda")
    with pytest.raises(UserError, match=r"only 2 GPUs \(cuda:0..cuda:1\)"):
        resolve_device("cuda:2")


def test_placement_one_gpu_when_it_fits_else_device_map_auto(monkeypatch, tiny_model_dir):
    from core.engine.model import _placement

    free = {"bytes": 10**12}
    count = {"n": 1}
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count["n"])
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index=0: (free["bytes"], free["bytes"]))
    bf16 = torch.bfloat16
    assert _placement(torch.device("cpu"), torch.float32, tiny_model_dir, {}) == {}
    assert _placement(torch.device("cuda"), bf16, tiny_model_dir, {}) == {"device_map": {"": 0}}
    assert _placement(torch.device("cuda:1"), bf16, tiny_model_dir, {}) == {"device_map": {"": 1}}
    free["bytes"] = 1000  # the tiny model's ~50 kB of weights do not fit a 1 kB GPU
    assert _placement(torch.device("cuda"), bf16, tiny_model_dir, {}) == {"device_map": "auto"}
    free["bytes"], count["n"] = 10**12, 2  # several GPUs: spread over them
    assert _placement(torch.device("cuda"), bf16, tiny_model_dir, {}) == {"device_map": "auto"}


def test_dtype_rules(monkeypatch):
    assert default_dtype(torch.device("cpu")) == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert default_dtype(torch.device("cuda")) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert default_dtype(torch.device("cuda:0")) == torch.float32  # a GPU before Ampere
    assert check_dtype("bf16") == check_dtype(torch.bfloat16) == torch.bfloat16
    assert check_dtype("float32") == torch.float32 and check_dtype(None) is None
    for bad in ("float16", torch.float16, "int8"):
        with pytest.raises(UserError, match="float32 or bfloat16"):
            check_dtype(bad)
    assert SCORE_TOLERANCE[torch.float32] == 1e-4


def test_load_model_refuses_a_bad_device_or_dtype_before_loading(tiny_model_dir):
    with pytest.raises(UserError, match="device must be"):
        load_model(str(tiny_model_dir), device="gpu")
    with pytest.raises(UserError, match="float32 or bfloat16"):
        load_model(str(tiny_model_dir), device="cpu", dtype="float16")


# --- the CLI's --device --------------------------------------------------------------------------


@pytest.fixture()
def prompts_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBELENS_DEVICE", "auto")  # restored after the test, whatever --device set
    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps({"id": "p0", "prompt": "Hi"}) + "\n")
    return path


def test_cli_refuses_a_bad_device_with_one_line_and_writes_nothing(prompts_file, tmp_path, tiny_model_dir, capsys):
    from core.orchestration.cli import main

    out = tmp_path / "out.jsonl"
    for argv in (["--device", "gpu", "generate"], ["generate", "--device", "cuda:x"]):
        code = main([*argv, "--prompts", str(prompts_file), "--out", str(out), "--model", str(tiny_model_dir)])
        err = capsys.readouterr().err
        assert code == 2 and not out.exists()
        assert err.count("\n") == 1 and err.startswith("error: device must be auto, cpu, cuda or cuda:N")


@NO_GPU
def test_cli_device_cuda_without_a_gpu_is_one_clear_error(prompts_file, tmp_path, tiny_model_dir, capsys):
    from core.orchestration.cli import main

    out = tmp_path / "out.jsonl"
    code = main(
        [
            "--quiet",
            "generate",
            "--device",
            "cuda",
            "--prompts",
            str(prompts_file),
            "--out",
            str(out),
            "--model",
            str(tiny_model_dir),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert err.count("\n") == 1 and "use --device cpu" in err


def test_cli_device_sets_the_setting_for_this_process_and_its_workers(prompts_file, tmp_path, tiny_model_dir, capsys):
    import os

    from core.orchestration.cli import build_parser, main

    out = tmp_path / "out.jsonl"
    code = main(
        [
            "--quiet",
            "--device",
            "CPU",
            "generate",
            "--prompts",
            str(prompts_file),
            "--out",
            str(out),
            "--model",
            str(tiny_model_dir),
            "--max-new-tokens",
            "3",
        ]
    )
    assert code == 0 and out.exists()
    assert os.environ["PROBELENS_DEVICE"] == "cpu"  # a worker started now inherits it
    parser = build_parser()
    # the option goes before or after the command; the command's never hides the one before it
    assert parser.parse_args(["--device", "cpu", "train", "--data", "d", "--out", "o"]).device == "cpu"
    assert parser.parse_args(["train", "--data", "d", "--out", "o", "--device", "cuda:1"]).device == "cuda:1"
    assert parser.parse_args(["train", "--data", "d", "--out", "o"]).device is None
    for command in (
        ["retrain"],
        ["seed"],
        ["probes", "--device", "cpu", "list"],
        ["score", "--data", "d", "--probe", "p", "--out", "o"],
        ["evaluate", "--data", "d", "--probe", "p"],
        ["layers", "--data", "d"],
    ):
        argv = command if "--device" in command else [*command, "--device", "cpu"]
        assert parser.parse_args(argv).device == "cpu"


# --- the engine in bfloat16 ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def bf16_lm(tiny_model_dir):
    return load_model(str(tiny_model_dir), device="cpu", dtype=torch.bfloat16)


@pytest.fixture(scope="module")
def probe(bf16_lm):
    torch.manual_seed(3)
    head = LinearProbe(bf16_lm.hidden_size)
    torch.nn.init.normal_(head.linear.weight, std=0.5)
    return head


def test_a_bf16_model_loads_in_bf16_on_the_cpu_with_torchs_own_linear(bf16_lm, tiny_lm):
    assert bf16_lm.dtype == torch.bfloat16 and bf16_lm.device == torch.device("cpu")
    assert all(p.dtype == torch.bfloat16 for p in bf16_lm.model.parameters())
    up_proj = bf16_lm.model.model.layers[0].mlp.up_proj
    assert "forward" not in vars(up_proj)  # the small-batch CPU path is for float32 only
    assert tiny_lm.dtype == torch.float32 and "forward" in vars(tiny_lm.model.model.layers[0].mlp.up_proj)
    assert bf16_lm.tokenizer_hash == tiny_lm.tokenizer_hash  # the same model for a probe file


def test_the_probe_scores_in_float32_whatever_the_hidden_states(probe):
    h = torch.randn(7, probe.hidden_size).to(torch.bfloat16)
    scores = probe.predict(h)
    assert scores.dtype == torch.float32 and scores.device == torch.device("cpu")
    assert torch.equal(scores, probe.predict(h.float()))  # cast up first, then the float32 head
    assert probe(h).dtype == torch.float32
    as_numpy = probe.predict(h.float().numpy().astype(np.float16))
    assert isinstance(as_numpy, np.ndarray) and as_numpy.dtype == np.float32


def test_bf16_streaming_equals_teacher_forcing_within_the_bf16_tolerance(bf16_lm, probe):
    layer = bf16_lm.default_layer
    worst = 0.0
    for seed in range(3):
        stream = TokenStream(bf16_lm, MESSAGES, max_new_tokens=40, temperature=1.0, seed=seed, probe=probe)
        tokens = list(stream)
        assert tokens
        for t in tokens:  # hidden states leave the engine as float32 on the CPU
            assert t.hidden[layer].dtype == torch.float32 and t.hidden[layer].device.type == "cpu"
            assert isinstance(t.score, float) and 0.0 <= t.score <= 1.0
        forced = score_conversation(
            bf16_lm, MESSAGES + [{"role": "assistant", "content": stream.text}], [layer], [t.token_id for t in tokens]
        )
        assert forced.hidden[layer].dtype == torch.float32
        assert forced.trace.offsets == [(t.start, t.end) for t in tokens]
        diff = np.abs(probe.predict(forced.hidden[layer]).numpy() - [t.score for t in tokens])
        worst = max(worst, float(diff.max()))
        # bfloat16 logits: log-probabilities agree to bf16 precision, not to 1e-4
        np.testing.assert_allclose(forced.trace.logprobs, [t.logprob for t in tokens], atol=0.25)
    assert worst <= BF16_TOLERANCE, worst
    # the same seed gives the same sample (the draw happens on the CPU in float32)
    again = [t.token_id for t in TokenStream(bf16_lm, MESSAGES, max_new_tokens=40, temperature=1.0, seed=2)]
    assert again == [t.token_id for t in tokens]


@pytest.mark.parametrize("batch_size", [1, 3])
def test_the_bf16_batched_engine_agrees_with_teacher_forcing(bf16_lm, probe, batch_size):
    layer = bf16_lm.default_layer
    requests = [
        GenerationRequest(
            [{"role": "user", "content": p}],
            DecodingSettings(max_new_tokens=10 + 2 * n),
            probe=probe,
            layers=(1, layer),
        )
        for n, p in enumerate(PROMPTS)
    ]
    answers = list(generate_batched(bf16_lm, requests, batch_size=batch_size))
    assert len(answers) == len(PROMPTS)
    # Greedy tokens may differ from the lone stream where two candidates are within bf16 rounding
    # (a random model's logits are nearly flat), so each answer is checked against its own tokens.
    for answer in answers:
        assert answer.tokens and answer.finish_reason in {"eos", "length"}
        assert all(t.hidden[layer].dtype == torch.float32 and set(t.hidden) == {1, layer} for t in answer.tokens)
        forced = score_conversation(
            bf16_lm,
            [*answer.request.messages, {"role": "assistant", "content": answer.text}],
            [layer],
            [t.token_id for t in answer.tokens],
        )
        diff = np.abs(probe.predict(forced.hidden[layer]).numpy() - [t.score for t in answer.tokens])
        assert diff.max() <= BF16_TOLERANCE


def test_bf16_extraction_and_its_cache(bf16_lm, tiny_lm, probe, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    layer = bf16_lm.default_layer
    generations = [
        Generation([{"role": "user", "content": p}, {"role": "assistant", "content": f"Answer {n}: Lviv."}])
        for n, p in enumerate(PROMPTS[:4])
    ]
    cache = ActivationCache(bf16_lm, root=tmp_path)
    assert cache.dtype == torch.bfloat16 and ActivationCache(tiny_lm, root=tmp_path).dtype == torch.float16
    assert model_key(bf16_lm) != model_key(tiny_lm)  # bf16 states never answer for float32 ones
    cold = extract_activations(bf16_lm, generations, [layer], cache=cache)
    stored = sorted((tmp_path / model_key(bf16_lm) / f"L{layer}").rglob("*.safetensors"))
    assert len(stored) == 4 and load_file(stored[0])["hidden"].dtype == torch.bfloat16
    for item, gen in zip(cold, generations):
        h = item.hidden[layer]
        assert h.dtype == torch.float32 and torch.equal(h, h.to(torch.bfloat16).float())  # bf16 values, exactly
        alone = score_conversation(bf16_lm, gen.conversation, [layer])  # one row, no padding
        assert alone.trace.token_ids == item.trace.token_ids
        diff = probe.predict(h) - probe.predict(alone.hidden[layer])
        assert float(diff.abs().max()) <= BF16_TOLERANCE
    monkeypatch.setattr(bf16_lm.model, "forward", lambda *a, **k: pytest.fail("the model ran on a warm cache"))
    warm = extract_activations(bf16_lm, generations, [layer], cache=cache)
    assert all(torch.equal(a.hidden[layer], b.hidden[layer]) for a, b in zip(cold, warm))


def test_lora_trains_on_a_bf16_model_and_its_head_comes_back_float32_on_the_cpu(bf16_lm):
    from core.probes.lora import LoraSettings, lora_hidden, train_lora_probe
    from tests.support.capitals import answers

    generations = [
        Generation([{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}], spans=spans)
        for prompt, completion, spans, _split in answers()
    ][:8]
    result = train_lora_probe(
        bf16_lm, generations, bf16_lm.default_layer, LoraSettings(epochs=1, batch_answers=4, kl_weight=1.0)
    )
    assert len(result.history) == 2 and all(np.isfinite(h["loss"]) for h in result.history)
    assert result.head.linear.weight.dtype == torch.float32 and result.head.linear.weight.device.type == "cpu"
    adapters = [p for name, p in result.model.named_parameters() if "lora_" in name]
    assert adapters and all(p.dtype == torch.float32 for p in adapters)  # PEFT keeps adapters in float32
    hidden = lora_hidden(bf16_lm, result.model, generations[0].conversation, bf16_lm.default_layer)
    assert hidden.dtype == torch.float32 and result.head.predict(hidden).dtype == torch.float32
    assert not any("lora" in name for name, _ in bf16_lm.model.named_modules())  # the shared model is untouched


def test_model_cache_keeps_placements_apart(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(model_module, "_MODELS", {})
    default = model_module.get_model(str(tiny_model_dir))
    bf16 = model_module.get_model(str(tiny_model_dir), device="cpu", dtype="bfloat16")
    assert default is not bf16 and bf16.dtype == torch.bfloat16
    assert model_module.get_model(str(tiny_model_dir), device="cpu", dtype=torch.bfloat16) is bf16
    assert str(tiny_model_dir) in model_module._MODELS  # the default placement keeps the plain id
