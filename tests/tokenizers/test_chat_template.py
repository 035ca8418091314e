"""ChatTemplate renders what transformers' apply_chat_template renders, in a sandbox."""

from __future__ import annotations

from datetime import datetime

import pytest

from tunesmith import CheckpointError, DataError
from tunesmith.testing import LLAMA3_CHAT_TEMPLATE
from tunesmith.tokenizers import ChatTemplate

# Exercises trim_blocks / lstrip_blocks, loop controls, namespace, tojson, the
# {% generation %} tag and the special-token variables.
TEMPLATE = """\
{% set ns = namespace(n=0) %}
{% for message in messages %}
    {% if message['role'] == 'tool' %}{% continue %}{% endif %}
    {% set ns.n = ns.n + 1 %}
    <{{ message['role'] }}>
    {% if message['role'] == 'assistant' %}
        {% generation %}{{ message['content'] | trim }}{{ eos_token }}{% endgeneration %}
    {% else %}
        {{ message['content'] | tojson }}
    {% endif %}
{% endfor %}
{% if add_generation_prompt %}<assistant>{% endif %}
count={{ ns.n }}"""

MESSAGES = [
    {"role": "system", "content": 'Use <b>html</b> & "quotes" ü'},
    {"role": "user", "content": "Hi"},
    {"role": "tool", "content": "skipped"},
    {"role": "assistant", "content": "  Hello!  "},
]


@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_render_equals_transformers(add_generation_prompt):
    from transformers.utils.chat_template_utils import render_jinja_template

    expected, _ = render_jinja_template(
        [MESSAGES],
        chat_template=TEMPLATE,
        add_generation_prompt=add_generation_prompt,
        bos_token="<s>",
        eos_token="</s>",
    )
    ours = ChatTemplate(TEMPLATE).render(
        MESSAGES, add_generation_prompt=add_generation_prompt, bos_token="<s>", eos_token="</s>"
    )
    assert ours == expected[0]
    assert '"Use <b>html</b> & \\"quotes\\" ü"' in ours  # tojson does not HTML-escape
    assert ours.endswith("count=3")


def test_llama3_template_renders_the_published_format():
    rendered = ChatTemplate(LLAMA3_CHAT_TEMPLATE).render(
        [{"role": "user", "content": " Hi "}, {"role": "assistant", "content": "Yo"}],
        add_generation_prompt=False,
        bos_token="<|begin_of_text|>",
    )
    assert rendered == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nYo<|eot_id|>"
    )


def test_raise_exception_becomes_a_data_error_naming_the_roles():
    template = ChatTemplate(
        "{% if messages[0]['role'] != 'user' %}{{ raise_exception('must start with user') }}{% endif %}",
        where="the chat template of /models/x",
    )
    with pytest.raises(DataError) as info:
        template.render([{"role": "assistant", "content": "x"}])
    message = str(info.value)
    assert "the chat template of /models/x" in message
    assert "must start with user" in message
    assert "[assistant]" in message


def test_strftime_now_is_available():
    year = datetime.now().strftime("%Y")
    assert ChatTemplate("{{ strftime_now('%Y') }}").render([]) == year


def test_the_sandbox_refuses_attribute_escapes():
    template = ChatTemplate("{{ messages.__class__.__mro__ }}")
    with pytest.raises(DataError):
        template.render([])
    with pytest.raises(DataError):
        ChatTemplate("{% set x = messages.append(1) %}").render([])


def test_a_broken_template_is_a_checkpoint_error():
    with pytest.raises(CheckpointError, match="not a valid Jinja template"):
        ChatTemplate("{% for m in messages %}")
