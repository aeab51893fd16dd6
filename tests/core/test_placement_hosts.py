"""Hosts in placement: configured multi-GPU hosts, and how many fitting GPUs one host offers."""

from __future__ import annotations

from core.placement import GB, Requirement, Slot, configured_slots, largest_gang


def test_configured_hosts_with_several_gpus() -> None:
    slots = configured_slots("4xA100:80, L4:24")
    assert [s.host for s in slots] == ["configured-0"] * 4 + ["configured-1"]
    assert {s.gpu_name for s in slots[:4]} == {"A100"} and slots[4].gpu_name == "L4"
    assert all(s.memory_total == 80 * GB for s in slots[:4])


def test_a_gpu_name_with_an_x_is_not_a_count() -> None:
    [slot] = configured_slots("RTX6000x:48")
    assert slot.gpu_name == "RTX6000x" and slot.host == "configured-0"


def test_largest_gang_counts_fitting_gpus_per_host() -> None:
    slots = [
        Slot("a0", "cuda", "A100", 80 * GB, "a"),
        Slot("a1", "cuda", "A100", 80 * GB, "a"),
        Slot("b0", "cuda", "L4", 24 * GB, "b"),
        Slot("b1", "cuda", "L4", 24 * GB, "b"),
        Slot("b2", "cuda", "L4", 24 * GB, "b"),
    ]
    assert largest_gang(slots, Requirement(20 * GB)) == 3
    assert largest_gang(slots, Requirement(40 * GB)) == 2
    assert largest_gang(slots, Requirement(100 * GB)) == 0
