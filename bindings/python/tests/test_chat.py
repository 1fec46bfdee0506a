# SPDX-License-Identifier: MIT
"""Tokenizer.apply_chat_template: the real chat templates of tests/fixtures/chat_templates
(ChatML, Llama-2, Llama-3, Mistral, Zephyr/TinyLlama, Qwen2) render exactly as Jinja2 renders
them with transformers' settings (trim_blocks, lstrip_blocks, raise_exception), over many
conversations; and a set of small templates covering each construct of the subset."""
import json
import os

import pytest

from conftest import load_strop

strop = load_strop()
jinja2 = pytest.importorskip("jinja2")  # Debian's python3-jinja2 (.ci/deps --full)
from jinja2.sandbox import ImmutableSandboxedEnvironment  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATES = os.path.join(HERE, "..", "..", "..", "tests", "fixtures", "chat_templates")
NAMES = sorted(f[:-6] for f in os.listdir(TEMPLATES) if f.endswith(".jinja"))
SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}


class Refused(Exception):
    pass


def jinja_render(template, messages, add_generation_prompt):
    """transformers' _compile_jinja_template, written from its documented behaviour."""
    def raise_exception(message):
        raise Refused(message)
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    env.filters["tojson"] = lambda x: json.dumps(x, ensure_ascii=False)  # transformers' own
    return env.from_string(template).render(messages=messages,
                                            add_generation_prompt=add_generation_prompt,
                                            **SPECIAL)


CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "  What is 2+2?  "}, {"role": "assistant", "content": "4"},
     {"role": "user", "content": "And 3+3?\n"}],
    [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Ünïcödé ✓"},
     {"role": "assistant", "content": " sure "}, {"role": "user", "content": "bye"},
     {"role": "assistant", "content": "Goodbye.\n\nSee you."}],
    [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],  # not alternating
    [{"role": "tool", "content": "x"}],
    [],
]


@pytest.fixture
def tok(tmp_path):
    """A tokenizer whose tokenizer_config.json carries the special tokens (no template)."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3, "a": 4}
    (tmp_path / "tokenizer.json").write_text(json.dumps({
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
        "pre_tokenizer": {"type": "Whitespace"}}), encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {**SPECIAL, "eos_token": {"content": "</s>", "special": True}}), encoding="utf-8")
    with strop.Tokenizer.from_file(tmp_path) as t:
        yield t


@pytest.mark.parametrize("name", NAMES)
def test_real_templates_equal_jinja(tok, name):
    with open(os.path.join(TEMPLATES, name + ".jinja"), encoding="utf-8") as f:
        template = f.read()
    checked = 0
    for conv in CONVERSATIONS:
        for gen in (False, True):
            try:
                want = jinja_render(template, conv, gen)
            except Refused as e:
                with pytest.raises(strop.StropError, match="refused the messages: " + str(e)[:20]):
                    tok.apply_chat_template(conv, gen, chat_template=template)
                continue
            except Exception:  # e.g. messages[0] of an empty conversation
                with pytest.raises(strop.StropError):
                    tok.apply_chat_template(conv, gen, chat_template=template)
                continue
            assert tok.apply_chat_template(conv, gen, chat_template=template) == want, (conv, gen)
            checked += 1
    assert checked >= 6


CONSTRUCTS = [
    "{{ 'a' ~ 1 ~ none ~ true }}|{{ 7 // 2 }}{{ -7 // 2 }}{{ -7 % 3 }}{{ 2 * 3 - 1 }}",
    "{% set x = [1, 2, 3] %}{{ x[1:] }}{{ x[::-1] }}{{ x | length }}{{ x[-1] }}{{ 'abc'[1] }}",
    "{% for m in messages if m.role != 'system' %}{{ loop.index }}/{{ loop.length }}"
    "{{ m.content | upper }}{% if not loop.last %}, {% endif %}{% endfor %}",
    "{% set ns = namespace(found=false) %}{% for m in messages %}{% if 'i' in m['content'] %}"
    "{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.found }}",
    "{% for m in messages %}{% if loop.index0 == 1 %}{% break %}{% endif %}{{ m.role }}"
    "{% endfor %}{% for i in range(3) %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}",
    "{{ foo is defined }}{{ foo is not defined }}{{ none is none }}{{ 'x' if foo else 'y' }}"
    "{{ foo | default('d') }}{{ messages | first | length }}",
    "  {%- if true -%}  \n  x  \n  {%- endif -%}  y\n{# a comment #}\n  {% if true %}\n  z\n"
    "  {% endif %}\nw {{ 'q' }}\n",
    "{{ 'It''s' }} {{ \"a\\tb\\u00e9\" }} {{ {'k': 1}['k'] }} {{ [1, 'a'] }} {{ {'k': 'v'} }}",
    "{{ '  pad  '.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ 'Hi'.lower() }}"
    "{{ 'ab'.startswith('a') }}{{ 'ab'.endswith('a') }}|{{ ' t ' | trim }}|{{ [1,2] | join('-') }}",
    "{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}{{ 1 < 2 and 'b' >= 'a' }}"
    "{{ 'z' not in 'abc' }}{{ (1 == 1) != (2 == 3) }}",
    "{{ messages | tojson }}|{{ {'a': [1, none, true], 'b': 'q\"\\\\\n\t\x01é'} | tojson }}",
]


@pytest.mark.parametrize("template", CONSTRUCTS)
def test_constructs_equal_jinja(tok, template):
    conv = CONVERSATIONS[3]
    assert tok.apply_chat_template(conv, True, chat_template=template) == \
        jinja_render(template, conv, True)


def test_tokenizer_config_template_and_errors(tmp_path, tok):
    with pytest.raises(strop.StropError, match="no chat template"):
        tok.apply_chat_template(CONVERSATIONS[0])
    with pytest.raises(strop.StropError, match=r"the chat template:1:8: unknown syntax"):
        tok.apply_chat_template(CONVERSATIONS[0], chat_template="{{ 1 + @ }}")
    with pytest.raises(strop.StropError, match=r"the chat template:2:4: unknown syntax: the "
                                               r"statement 'macro'"):
        tok.apply_chat_template(CONVERSATIONS[0], chat_template="x\n{% macro f() %}{% endmacro %}")
    with open(os.path.join(TEMPLATES, "zephyr.jinja"), encoding="utf-8") as f:
        zephyr = f.read()
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "tokenizer.json").write_text(json.dumps({
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}}))
    (tmp_path / "z" / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<s>", "eos_token": "</s>",
        "chat_template": [{"name": "default", "template": zephyr},
                          {"name": "short", "template": "{{ messages | length }}"}]}))
    with strop.Tokenizer.from_file(tmp_path / "z" / "tokenizer.json") as z:
        conv = CONVERSATIONS[2]
        assert z.apply_chat_template(conv, True) == jinja_render(zephyr, conv, True)
        assert z.apply_chat_template(conv, chat_template="short") == "3"


def test_prompt_response_dataset_with_chat_template(tmp_path):
    """Dataset.load_text_file(chat_template=...): the prompt is the template's render of the
    user message with the generation prompt, the response what the full render adds."""
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat\nthe dog ran\n" * 20, encoding="utf-8")
    tok = strop.Tokenizer.train_bpe([corpus], vocab_size=280, special_tokens=["<|endoftext|>"])
    tok.set_special_id("eos", 0)
    p = tmp_path / "pr.jsonl"
    p.write_text(json.dumps({"prompt": "the cat", "response": " sat"}) + "\n")
    tmpl = ("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% if m.role == 'assistant' %}"
            "{{ eos_token }}{% endif %}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}")
    ds = strop.Dataset.load_text_file(p, tok, task="prompt_response", max_length=32,
                                      chat_template=tmpl)
    x, t = ds[0]
    prompt = tok.encode("<user>the cat<assistant>", add_special_tokens=False)
    seq = prompt + tok.encode(" sat<|endoftext|>", add_special_tokens=False)
    n = len(seq) - 1
    assert x[:n].tolist() == seq[:-1]
    assert t[:len(prompt) - 1].tolist() == [-100] * (len(prompt) - 1)
    assert t[len(prompt) - 1:n].tolist() == seq[len(prompt):]
    with pytest.raises(strop.StropError, match="no chat template"):
        strop.Dataset.load_text_file(p, tok, task="prompt_response", chat_template=True)
