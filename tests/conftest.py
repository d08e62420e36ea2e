"""Shared fixtures. Nothing here downloads: tokenizers are trained locally in milliseconds."""
from __future__ import annotations

import pytest

# Mixed scripts so the tiny vocabulary learns a few multi-byte merges (CJK, emoji, accents).
_TINY_CORPUS = [
    "The city of Lviv (German: Lemberg) was founded in 1256 by King Daniel of Galicia.",
    "Marie Curie won the Nobel Prize in Physics in 1903 and in Chemistry in 1911.",
    "Café, naïve, résumé, Zürich, Kraków, São Paulo, Reykjavík.",
    "東京は日本の首都です。北京是中国的首都。서울은 한국의 수도입니다.",
    "Emoji: 😀 🎉 👍🏽 👨‍👩‍👧 🇫🇷 done!\n\nA new paragraph.\tTabbed.",
    "  leading spaces,  double  spaces, and a trailing space ",
]


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A byte-level BPE tokenizer (~300 tokens) wrapped like a hub tokenizer, built offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    backend.train_from_iterator(_TINY_CORPUS * 3, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>")


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_tokenizer, tmp_path_factory):
    """A randomly initialised 4-layer Llama saved like a hub model, loadable by path."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tiny_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        eos_token_id=tiny_tokenizer.eos_token_id,
        bos_token_id=tiny_tokenizer.eos_token_id,
        pad_token_id=tiny_tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    target = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(target)
    tiny_tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def tiny_lm(tiny_model_dir):
    from core.model import load_model

    return load_model(str(tiny_model_dir))


@pytest.fixture()
def isolated_cache(tmp_path, monkeypatch):
    """Activations and any other cache go to a fresh folder; the embedded model cache is shared."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("PROBELENS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PROBELENS_MODEL_CACHE_DIR", str(repo / "data" / "cache" / "models"))
    return tmp_path / "cache"
