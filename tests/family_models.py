"""Tiny randomly initialised models of every supported family, built from configs (no download).

Each builder returns ``(model, tokenizer)`` with eager attention, *before* ``make_handle``, so a test can
take the plain library output first. 2 layers, 4 query heads, small widths; GQA where the family has it;
sliding windows shorter than the test inputs where the family has them, so the window masks matter.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import transformers as tf

from tests.tiny_models import _WORDS, RoundTripCharTokenizer, word_tokenizer

VOCAB = 64
WINDOW = 4  # sliding window (tokens), shorter than the test texts
INIT = 0.1  # weight scale: larger than the default 0.02 so that removing one head visibly changes the output


@dataclass(frozen=True)
class Family:
    """One model family: how to build a tiny instance, and what it is."""

    name: str
    build: Callable[[], tuple[torch.nn.Module, object]]
    causal: bool = True


def _causal(config_class, model_class, **config) -> Callable[[], tuple[torch.nn.Module, object]]:
    config = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, **config}  # CharTokenizer's specials

    def build():
        model = model_class(config_class(attn_implementation="eager", initializer_range=INIT, **config))
        return model.eval(), RoundTripCharTokenizer()
    return build


def _encoder(config_class, model_class, **config) -> Callable[[], tuple[torch.nn.Module, object]]:
    def build():
        model = model_class(config_class(vocab_size=len(_WORDS), attn_implementation="eager", initializer_range=INIT,
                                         **config),
                            add_pooling_layer=False)
        return model.eval(), word_tokenizer()
    return build


_LLAMA_LIKE = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
_ENCODER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=128)

FAMILIES: tuple[Family, ...] = (
    Family("gpt2", _causal(tf.GPT2Config, tf.GPT2LMHeadModel, vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4,
                           n_positions=128)),
    Family("gpt_neox", _causal(tf.GPTNeoXConfig, tf.GPTNeoXForCausalLM, vocab_size=VOCAB, hidden_size=32,
                               intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                               max_position_embeddings=128)),
    Family("llama", _causal(tf.LlamaConfig, tf.LlamaForCausalLM, tie_word_embeddings=True, **_LLAMA_LIKE)),
    Family("mistral", _causal(tf.MistralConfig, tf.MistralForCausalLM, sliding_window=WINDOW, **_LLAMA_LIKE)),
    Family("qwen2", _causal(tf.Qwen2Config, tf.Qwen2ForCausalLM, use_sliding_window=True, sliding_window=WINDOW,
                            max_window_layers=1, **_LLAMA_LIKE)),
    Family("qwen3", _causal(tf.Qwen3Config, tf.Qwen3ForCausalLM, head_dim=16, **_LLAMA_LIKE)),
    Family("gemma2", _causal(tf.Gemma2Config, tf.Gemma2ForCausalLM, head_dim=16, query_pre_attn_scalar=16,
                             sliding_window=WINDOW, final_logit_softcapping=2.0, attn_logit_softcapping=5.0,
                             **_LLAMA_LIKE)),
    Family("gemma3", _causal(tf.Gemma3TextConfig, tf.Gemma3ForCausalLM, head_dim=16, query_pre_attn_scalar=16,
                             sliding_window=WINDOW, layer_types=["sliding_attention", "full_attention"],
                             **_LLAMA_LIKE)),
    Family("phi3", _causal(tf.Phi3Config, tf.Phi3ForCausalLM, sliding_window=WINDOW,
                           **_LLAMA_LIKE)),
    Family("olmo", _causal(tf.OlmoConfig, tf.OlmoForCausalLM, **_LLAMA_LIKE)),
    Family("bert", _encoder(tf.BertConfig, tf.BertModel, **_ENCODER), causal=False),
    Family("roberta", _encoder(tf.RobertaConfig, tf.RobertaModel, pad_token_id=0, **_ENCODER), causal=False),
)


def build_family(family: Family, seed: int = 0) -> tuple[torch.nn.Module, object]:
    """A fresh, seeded instance of ``family``: (model in eval mode with eager attention, tokenizer)."""
    torch.manual_seed(seed)
    return family.build()


def tiny_view_only(seed: int = 0) -> tuple[torch.nn.Module, object]:
    """A tiny encoder whose attention does not go through transformers' attention interface (MPNet)."""
    torch.manual_seed(seed)
    config = tf.MPNetConfig(vocab_size=len(_WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, max_position_embeddings=128, pad_token_id=0)
    return tf.MPNetModel(config, add_pooling_layer=False).eval(), word_tokenizer()
