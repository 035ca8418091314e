"""Where a recipe runs: one device, or many processes sharded with FSDP2.

The recipe asks the strategy to prepare the model, to sum numbers over ranks and
to gather full state dicts; it never branches on the device count itself.
Processes come from torchrun; the process group uses NCCL on CUDA and gloo on CPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils._python_dispatch import is_traceable_wrapper_subclass

__all__ = ["Strategy", "get_strategy"]


@dataclass
class Strategy:
    """Single-device behaviour; :class:`_FSDP` overrides what differs."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def prepare(self, model: nn.Module, layers: Iterable[nn.Module]) -> nn.Module:
        return model

    def all_sum(self, value: torch.Tensor) -> torch.Tensor:
        return value

    def full_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu") for k, v in model.state_dict().items()}

    def optimizer_state_dict(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
        return optimizer.state_dict()

    def load_optimizer_state_dict(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict
    ) -> None:
        optimizer.load_state_dict(state)

    def load_model_state_dict(self, model: nn.Module, state: dict, *, strict: bool) -> None:
        model.load_state_dict(state, strict=strict)

    def barrier(self) -> None:
        pass

    def close(self) -> None:
        pass


class _FSDP(Strategy):
    """FSDP2: every decoder layer and the root sharded with ``fully_shard``."""

    def prepare(self, model: nn.Module, layers: Iterable[nn.Module]) -> nn.Module:
        from torch.distributed.fsdp import fully_shard

        for layer in layers:
            fully_shard(layer)
        fully_shard(model)
        return model

    def all_sum(self, value: torch.Tensor) -> torch.Tensor:
        value = value.to(self.device)
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value

    def full_state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Every tensor whole, on rank 0's CPU (the other ranks get ``{}``); a tensor two
        names share (tied embeddings) stays one tensor."""
        from torch.distributed.tensor import DTensor

        out: dict[str, torch.Tensor] = {}
        gathered: dict[int, torch.Tensor | None] = {}
        with torch.no_grad():
            for name, tensor in model.state_dict(keep_vars=True).items():
                if id(tensor) not in gathered:  # every rank gathers the same ones, in order
                    whole = tensor
                    if isinstance(tensor, DTensor):
                        whole = _full_precision_shards(tensor).full_tensor()
                    gathered[id(tensor)] = whole.detach().cpu() if self.is_main else None
                if self.is_main:
                    out[name] = gathered[id(tensor)]
        return out

    def optimizer_state_dict(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_optimizer_state_dict(model, optimizer, options=options)

    def load_optimizer_state_dict(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict
    ) -> None:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=False)
        set_optimizer_state_dict(model, optimizer, state, options=options)

    def load_model_state_dict(self, model: nn.Module, state: dict, *, strict: bool) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        options = StateDictOptions(full_state_dict=True, strict=strict)
        set_model_state_dict(model, state, options=options)

    def barrier(self) -> None:
        dist.barrier()

    def close(self) -> None:
        dist.destroy_process_group()


def _full_precision_shards(tensor: Any) -> Any:
    """A sharded tensor whose shards are a quantized subclass (QLoRA's NF4) as a sharded
    tensor of their values: torchao's collectives for NF4 crash on gloo now and then
    (a segfault in ``wait_tensor``), and what a full state dict is for (merging, saving)
    needs the values."""
    from torch.distributed.tensor import DTensor

    from tunesmith.checkpoint import full_precision

    local = tensor.to_local()
    if not is_traceable_wrapper_subclass(local):
        return tensor
    return DTensor.from_local(
        full_precision(local), tensor.device_mesh, tensor.placements, run_check=False,
        shape=tensor.shape, stride=tensor.stride(),
    )  # fmt: skip


def get_strategy(device: torch.device) -> Strategy:
    """FSDP2 when launched by torchrun with more than one process, else one device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Strategy(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return _FSDP(device, dist.get_rank(), dist.get_world_size())
