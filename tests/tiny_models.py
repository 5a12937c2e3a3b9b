"""Tiny randomly initialised models wrapped as handles, for fast tests of shapes and edge cases."""
from __future__ import annotations

import torch
from transformers import BertConfig, BertModel, BertTokenizerFast, LlamaConfig, LlamaForCausalLM

from analysis.runtime.handle import ModelHandle
from analysis.runtime.loading import make_handle

_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ",", ".", "the", "a", "cat", "dog", "sat", "on", "mat",
          "when", "mary", "john", "went", "to", "store", "gave", "drink"]


class CharTokenizer:
    """A minimal tokenizer for the tiny LLaMA: one token per character (ids 3..), bos=1, eos=2."""

    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0
    cls_token_id = sep_token_id = mask_token_id = None
    all_special_ids = [0, 1, 2]

    def __len__(self) -> int:
        return 64

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [3 + (ord(ch) % 61) for ch in text]

    def __call__(self, text: str, return_tensors: str = "pt", truncation: bool = False):
        class Encoded:
            input_ids = torch.tensor([self.encode(text)])
        return Encoded()

    def decode(self, ids, clean_up_tokenization_spaces: bool = False) -> str:
        return "".join(chr(32 + (int(i) - 3) % 61) if int(i) >= 3 else "" for i in ids)


def _handle(model: torch.nn.Module, tokenizer, name: str) -> ModelHandle:
    return make_handle(name, model, tokenizer, "random", "cpu")


def tiny_llama(seed: int = 0) -> ModelHandle:
    """2 layers, 4 query heads, 2 KV heads, d_model 32, vocab 64."""
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=True, attn_implementation="eager")
    return _handle(LlamaForCausalLM(config), CharTokenizer(), "tiny-llama")


def tiny_bert(seed: int = 0) -> ModelHandle:
    """2 layers, 4 heads, d_model 32, a small word vocabulary."""
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(_WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=128, attn_implementation="eager")
    return _handle(BertModel(config, add_pooling_layer=False), word_tokenizer(), "tiny-bert")


class RoundTripCharTokenizer(CharTokenizer):
    """``CharTokenizer`` whose ``decode`` inverts ``encode`` (id 3 + k decodes to chr(61 + k)), so that seeded
    word probes (``analysis.datasets.probes.random_token_ids``) find plain letter tokens. The inherited
    ``decode`` is not the inverse of ``encode`` (e.g. 'A' encodes to 7, and 7 decodes to '$'). Called like a
    transformers tokenizer: ``return_tensors=None`` (the default) gives a list, "pt" a [1, n] tensor."""

    def __call__(self, text: str, return_tensors: str | None = None, truncation: bool = False,
                 add_special_tokens: bool = True):
        ids = self.encode(text)

        class Encoded:
            input_ids = torch.tensor([ids]) if return_tensors == "pt" else ids
        return Encoded()

    def decode(self, ids, clean_up_tokenization_spaces: bool = False) -> str:
        return "".join(chr(61 + int(i) - 3) for i in ids if int(i) >= 3)


def word_tokenizer(words: list[str] | None = None):
    """A WordPiece tokenizer over ``words`` (default: the tiny BERT words) that knows the words.

    The vocabulary is passed itself: with transformers 5 ``BertTokenizerFast(vocab_file=...)`` ignores the file
    and keeps only the special tokens, so every word would become [UNK].
    """
    return BertTokenizerFast(vocab={word: index for index, word in enumerate(words or _WORDS)})
