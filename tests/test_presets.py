"""The derivation of repeats, epochs and steps from the dataset size."""

from __future__ import annotations

from loratui.engine.planning.presets import derive_schedule


def test_small_dataset_gets_repeats_to_reach_the_target():
    s = derive_schedule([20], batch_size=4, target_steps=1500)
    assert s.epochs == 10 and s.repeats == 30
    assert s.total_steps == 10 * (20 * 30 // 4) == 1500
    assert "20 images × 30 repeats" in s.explain and "1500 steps" in s.explain


def test_large_dataset_gets_one_repeat():
    s = derive_schedule([400, 300], batch_size=4, target_steps=1200)
    assert s.repeats == 1 and s.total_steps == 10 * (100 + 75)


def test_steps_given_wins_and_epochs_follow():
    s = derive_schedule([12], batch_size=4, target_steps=1500, steps=50)
    assert s.total_steps == 50 and s.repeats == 1 and s.epochs == 17
    assert "50 steps as set" in s.explain


def test_kohya_folder_repeats_are_kept():
    s = derive_schedule([100], batch_size=4, target_steps=1500, folder_repeats=True)
    assert s.repeats == 1 and s.total_steps == 250 and "kohya folder" in s.explain


def test_buckets_round_up_per_bucket_and_accumulation_divides():
    s = derive_schedule([5, 3], batch_size=4, target_steps=10, repeats=1, epochs=2, grad_accum=2)
    # 2 + 1 = 3 micro-batches per epoch → 2 optimizer steps
    assert s.steps_per_epoch == 2 and s.total_steps == 4


def test_short_batches_per_bucket_are_named_where_they_add_steps():
    """12 images at batch 2 read '= 7 steps' with no word on why; the buckets are named then."""
    s = derive_schedule([5, 4, 3], batch_size=2, target_steps=100, repeats=1)
    assert s.steps_per_epoch == 3 + 2 + 2
    assert "÷ batch 2 in 3 aspect buckets = 7 steps" in s.explain
    even = derive_schedule([6, 6], batch_size=2, target_steps=100, repeats=1)
    assert "bucket" not in even.explain and "÷ batch 2 = 6 steps" in even.explain
