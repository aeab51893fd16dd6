"""Hosts in placement: configured multi-GPU hosts, how many fitting GPUs one host offers, and the N hosts × G
GPUs layouts of jobs wider than any host."""

from __future__ import annotations

from core.placement import GB, Requirement, Slot, configured_slots, largest_gang, largest_placement, node_layout


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


def _pool(*sizes: int) -> list[Slot]:
    return [
        Slot(f"{h}{i}", "cuda", "H100", 80 * GB, h) for h, n in zip("abcdef", sizes, strict=False) for i in range(n)
    ]


def test_node_layout_is_one_host_when_one_can_hold_the_job_else_fewest_hosts() -> None:
    pool = _pool(2, 2, 1)
    layouts = {k: node_layout(pool, Requirement(None, gpus=k)) for k in range(1, 7)}
    assert layouts == {1: (1, 1), 2: (1, 2), 3: (3, 1), 4: (2, 2), 5: None, 6: None}
    assert node_layout(_pool(2, 2), Requirement(None, gpus=3)) is None  # 3 × 1 needs three hosts


def test_node_layout_counts_only_fitting_slots() -> None:
    pool = [*_pool(1, 1), Slot("l0", "cuda", "L4", 24 * GB, "l"), Slot("l1", "cuda", "L4", 24 * GB, "l")]
    assert node_layout(pool, Requirement(20 * GB, gpus=2)) == (1, 2)
    assert node_layout(pool, Requirement(40 * GB, gpus=2)) == (2, 1)
    assert node_layout(pool, Requirement(100 * GB, gpus=1)) is None


def test_largest_placement_is_the_most_gpus_any_layout_holds() -> None:
    assert largest_placement(_pool(2, 2, 1), Requirement(None)) == 4  # 2 × 2 beats 3 × 1 and 1 × 2
    assert largest_placement(_pool(8, 1, 1, 1), Requirement(None)) == 8
    assert largest_placement(_pool(3, 3, 3, 1, 1), Requirement(None)) == 9
    assert largest_placement(_pool(1, 1, 1, 1, 1), Requirement(None)) == 5
    assert largest_placement([], Requirement(None)) == 0
