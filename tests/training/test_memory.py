import torch

from tunesmith.training import memory_stats, reset_peak_memory_stats


def test_cpu_memory_stats_keys_and_values():
    stats = memory_stats("cpu")
    assert "peak_memory_rss" in stats
    assert 0.01 < stats["peak_memory_rss"] < 1024  # GiB, a python process with torch
    if "memory_rss" in stats:
        assert stats["memory_rss"] <= stats["peak_memory_rss"] + 1e-6


def test_cpu_peak_tracks_a_large_allocation():
    reset_peak_memory_stats(torch.device("cpu"))
    before = memory_stats("cpu")["peak_memory_rss"]
    x = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB, touched
    x.add_(1)
    after = memory_stats("cpu")["peak_memory_rss"]
    del x
    assert after >= before + 0.05
