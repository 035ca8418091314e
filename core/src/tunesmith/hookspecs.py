"""The plugin contract: every hook a tunesmith plugin may implement.

Each hook receives a ``register`` callback and calls it once per component, with
one of the records from :mod:`tunesmith` (``Model``, ``Tokenizer``, ...). The core
owns the callback: it stamps the component with the plugin's distribution and
version and refuses a name that another plugin already registered. Hooks are
called once, lazily, the first time a command needs the registry.

A plugin module implements them with ``from tunesmith import hookimpl``::

    @hookimpl
    def register_models(register):
        register(Model(name="llama3_2_1b", builder=llama3_2_1b, family="llama"))
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from tunesmith._components import (
    CheckpointAdapter,
    Config,
    Dataset,
    Evaluator,
    Model,
    PeftMethod,
    Quantizer,
    Recipe,
    Tokenizer,
)

PROJECT = "tunesmith"
#: The plugin-API version this core implements. A plugin module may declare
#: ``TUNESMITH_PLUGIN_API = 2``; one declaring a version outside
#: :data:`SUPPORTED_PLUGIN_APIS` is skipped with a message naming the version it needs.
#: What each version changed is listed in docs/plugins.md ("Versions").
PLUGIN_API_VERSION = 2
#: Versions whose plugins still load. API 2 only added to API 1 (protocols, declared
#: PEFT types, fused modules, recipe schemas, rendered configs), so API-1 plugins work.
SUPPORTED_PLUGIN_APIS = (1, 2)

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ---------------------------------------------------------------- models ---


@hookspec
def register_models(register: Callable[[Model], None]) -> None:
    """Register model builders.

    Args:
        register: Call with one :class:`tunesmith.Model` per builder, e.g.
            ``register(Model(name="llama3_2_1b", builder=llama3_2_1b, family="llama"))``.
            ``family`` names the checkpoint adapter whose weights the model loads.
    """


@hookspec
def register_tokenizers(register: Callable[[Tokenizer], None]) -> None:
    """Register tokenizer builders.

    Args:
        register: Call with one :class:`tunesmith.Tokenizer` per builder. ``files``
            lists the checkpoint-relative files it loads (``original/tokenizer.model``)
            so ``tokenizer: {_component_: auto}`` can pick it for a checkpoint.
    """


@hookspec
def register_checkpoint_adapters(register: Callable[[CheckpointAdapter], None]) -> None:
    """Register one checkpoint adapter per model family.

    Args:
        register: Call with a :class:`tunesmith.CheckpointAdapter`: the HF ``model_type``
            values it reads, its HF <-> native key table, how to build the model from a
            ``config.json``, and optionally how to read Meta ``.pth`` checkpoints.
    """


# ------------------------------------------------------------ techniques ---


@hookspec
def register_peft_methods(register: Callable[[PeftMethod], None]) -> None:
    """Register parameter-efficient fine-tuning methods (``lora``, ``dora``, ``qlora``).

    Args:
        register: Call with a :class:`tunesmith.PeftMethod` whose builder takes the
            ``peft:`` config block and returns a transform that wraps any model's
            ``nn.Linear`` layers, names the trainable parameters, saves PEFT-format
            adapters and merges them.
    """


@hookspec
def register_quantizers(register: Callable[[Quantizer], None]) -> None:
    """Register post-training quantizers (``int8_weight_only``, ...).

    Args:
        register: Call with a :class:`tunesmith.Quantizer`.
    """


# ------------------------------------------------------------------ jobs ---


@hookspec
def register_recipes(register: Callable[[Recipe | Config], None]) -> None:
    """Register runnable recipes and the YAML configs shipped for them.

    Args:
        register: Call with a :class:`tunesmith.Recipe` for each runnable job (or alias
            with defaults) and a :class:`tunesmith.Config` for each shipped config. A
            config may name a recipe another plugin registers.
    """


@hookspec
def register_evaluators(register: Callable[[Evaluator], None]) -> None:
    """Register evaluation back-ends (``eleuther``).

    Args:
        register: Call with a :class:`tunesmith.Evaluator`.
    """


@hookspec
def register_datasets(register: Callable[[Dataset], None]) -> None:
    """Register dataset builders (``alpaca``, ``chat``, ``text_completion``).

    Args:
        register: Call with a :class:`tunesmith.Dataset` whose builder takes the
            tokenizer and the ``dataset:`` config block.
    """
