"""Training stops on a plateau of held-out particles' score: the schedule's
decisions, the held-out particles never reach a gradient step, and a resumed
run stops where an uninterrupted one does."""
import json

import numpy as np
import pytest
import torch

from gmmplugin.engine import train as train_module
from gmmplugin.engine.gmm import Gmm
from gmmplugin.engine.schedule import FLOOR, CosineSchedule, PlateauSchedule
from gmmplugin.engine.settings import TrainConfig
from gmmplugin.engine.simulate import Heterogeneity, SimulationSettings, simulate
from gmmplugin.engine.starfile import read_star
from gmmplugin.engine.train import Trainer, held_out_rows
from gmmplugin.tests import data_path


def _run(schedule, scores, steps=10):
    """Feed ``scores`` epoch by epoch; (epochs run, rates at each epoch's start)."""
    rates = []
    for epoch, score in enumerate(scores, 1):
        rates.append(schedule.rate((epoch - 1) * steps, steps))
        stop, why = schedule.end_epoch(epoch, score)
        if stop:
            return epoch, rates, why
    return len(scores), rates, ""


RISING = [0.35, 0.37, 0.38, 0.385, 0.387]
FLAT = [0.3872, 0.3873, 0.3873, 0.3874, 0.3874, 0.3874, 0.3874, 0.3875, 0.3875]


def test_each_plateau_halves_the_rate_and_the_last_one_stops():
    s = PlateauSchedule(1e-3, cap=40, baseline=0.30)
    epochs, rates, why = _run(s, RISING + FLAT)
    # no gain of 1 % of 0.087 over the best (epoch 5) from epoch 6 on: every two
    # such epochs halve the rate (after 7, 9 and 11), the plateau after the third
    # halving stops the training at 13
    assert epochs == 13, (epochs, why)
    assert "lowest learning rate" in why
    assert rates[1:7] == [1e-3] * 6               # constant after the warm-up
    assert rates[7:13] == [5e-4, 5e-4, 2.5e-4, 2.5e-4, 1.25e-4, 1.25e-4]
    assert s.finished(13)


def test_a_score_that_rises_again_after_a_halving_goes_on():
    """A stall is often the networks searching for a motion: after the rate is
    halved the score rises again, and the training goes on at that rate."""
    s = PlateauSchedule(1e-3, cap=40, baseline=0.30)
    notes = []
    for epoch, score in enumerate([0.35, 0.36, 0.3601, 0.3600, 0.37, 0.38, 0.39], 1):
        stop, note = s.end_epoch(epoch, score)
        notes.append(note)
        assert not stop
    assert "lowered to 0.0005" in notes[3] and s.state["level"] == 1
    assert s.rate(60, 10) == 5e-4 and s.state["flat"] == 0


def test_on_a_small_set_a_plateau_lasts_enough_optimiser_steps():
    """With few steps per epoch, two flat epochs are too short for the networks
    to leave a stall: the plateau must also last ``patience_steps`` steps."""
    short = PlateauSchedule(1e-3, cap=40, baseline=0.30, patience_steps=300,
                            steps_per_epoch=45)
    epochs, rates, _ = _run(short, RISING + FLAT, steps=45)
    # best at epoch 5; 300 steps of 45 = 7 flat epochs (6-12) before the first halving
    assert short.patience == 7
    assert rates[1:12] == [1e-3] * 11 and rates[12:] == [5e-4] * 2
    assert epochs == len(RISING + FLAT) and short.state["level"] == 1
    large = PlateauSchedule(1e-3, cap=40, baseline=0.30, patience_steps=300,
                            steps_per_epoch=5000)
    assert large.patience == 2          # a large set: two epochs are plenty of steps


def test_a_score_that_keeps_rising_stops_at_the_cap_after_a_cool_down():
    s = PlateauSchedule(1e-3, cap=20, baseline=0.30)
    epochs, rates, why = _run(s, [0.3 + 0.01 * e for e in range(1, 30)])
    assert epochs == 20 and "cap of 20 epochs" in why
    assert rates[1:15] == [1e-3] * 14          # the full rate until the last quarter
    assert all(a > b for a, b in zip(rates[15:], rates[16:]))
    assert rates[-1] < 0.15e-3 and s.rate(20 * 10 - 1, 10) < 1.1e-3 * FLOOR
    flat = PlateauSchedule(1e-3, cap=10, baseline=0.30, cooldown=0)
    assert _run(flat, [0.3 + 0.01 * e for e in range(1, 30)])[1][1:] == [1e-3] * 9


def test_a_noisy_dip_is_not_a_plateau():
    """One flat epoch among rising ones changes nothing."""
    s = PlateauSchedule(1e-3, cap=40, baseline=0.30)
    epochs, _, _ = _run(s, [0.35, 0.36, 0.359, 0.37, 0.38, 0.39, 0.40, 0.41])
    assert epochs == 8 and s.state["level"] == 0


def test_the_state_survives_a_checkpoint():
    scores = RISING + FLAT
    whole = PlateauSchedule(1e-3, cap=40, baseline=0.30)
    n_whole, _, _ = _run(whole, scores)
    first = PlateauSchedule(1e-3, cap=40, baseline=0.30)
    for e, sc in enumerate(scores[:8], 1):
        first.end_epoch(e, sc)
    second = PlateauSchedule(1e-3, cap=40, baseline=0.30)
    second.load(json.loads(json.dumps(first.state)))
    assert second.rate(80, 10) == 5e-4
    for e, sc in enumerate(scores[8:], 9):
        if second.end_epoch(e, sc)[0]:
            break
    assert e == n_whole == 13 and second.state == whole.state


def test_without_held_out_particles_the_count_is_fixed():
    s = CosineSchedule(1e-3, 10)
    assert s.rate(0, 10) == pytest.approx(1e-4)
    assert s.rate(10, 10) == pytest.approx(1e-3)
    assert s.rate(99, 10) == pytest.approx(1e-3 * FLOOR, rel=0.05)
    assert not s.end_epoch(9)[0] and s.end_epoch(10)[0]


def test_held_out_rows():
    held, rest = held_out_rows(5000, 0.05, seed=3)
    assert len(held) == 250 and len(rest) == 4750
    assert not np.intersect1d(held, rest).size and np.all(np.diff(held) > 0)
    assert np.array_equal(held, held_out_rows(5000, 0.05, seed=3)[0])
    assert len(held_out_rows(10 ** 6, 0.05, 0)[0]) == train_module.MAX_HELD_OUT
    assert len(held_out_rows(600, 0.05, 0)[0]) == 0       # too few: a fixed count
    assert len(held_out_rows(5000, 0.0, 0)[0]) == 0


@pytest.fixture(scope="module")
def moving(tmp_path_factory):
    out = tmp_path_factory.mktemp("moving")
    star = simulate(data_path("5a7u.pdb"), str(out),
                    SimulationSettings(n_particles=160, box=32, apix=1.5, snr=1.0, seed=5),
                    Heterogeneity(move="A", motion="rotate", amount=20.0))
    rng = np.random.default_rng(0)
    gmm = Gmm(np.column_stack([rng.normal(0, 8, (30, 3)), np.ones(30), np.full(30, 3.0)]),
              apix=1.5, box=32, resolution=6.0)
    return read_star(star), gmm


def test_training_stops_at_the_plateau_and_never_steps_on_held_out_particles(
        moving, tmp_path, monkeypatch):
    monkeypatch.setattr(train_module, "MIN_HELD_OUT", 10)
    particles, gmm = moving
    cfg = TrainConfig(latent_dim=2, max_res=6.0, epochs=40, batch_size=16, held_out=0.2,
                      plateau_gain=0.05, plateau_steps=0)
    lines = []
    trainer = Trainer(particles, gmm, cfg, str(tmp_path), log=lines.append)
    assert len(trainer.held) == 32
    images = trainer.prepare_images()
    feats = trainer.prepare_features(images)
    stepped, evaluating = set(), []
    batch, score = trainer._batch, trainer.held_out_score

    def spy_batch(images, rows):
        if not evaluating:                     # a batch for a gradient step
            stepped.update(int(r) for r in rows)
        return batch(images, rows)

    def spy_score(images, feats):
        evaluating.append(True)
        try:
            return score(images, feats)
        finally:
            evaluating.clear()
    trainer._batch, trainer.held_out_score = spy_batch, spy_score
    trainer.train(images, feats)
    assert stepped == set(trainer.train_rows.tolist())
    assert trainer.epoch < 40, "no plateau in 40 epochs"
    assert "lowest learning rate" in trainer.stopped_because
    rates = [h["learning_rate"] for h in trainer.history]
    assert sorted(set(rates), reverse=True) == [1e-3, 5e-4, 2.5e-4, 1.25e-4], rates
    assert all("held_out" in h for h in trainer.history)
    assert any("training stopped after %d epochs" % trainer.epoch in l for l in lines)
    held = [h["held_out"] for h in trainer.history]
    assert max(held) > float(np.mean(trainer.neutral_frc[trainer.held]))  # it learnt


def test_a_resumed_run_stops_where_an_uninterrupted_one_does(moving, tmp_path, monkeypatch):
    monkeypatch.setattr(train_module, "MIN_HELD_OUT", 10)
    particles, gmm = moving
    cfg = dict(latent_dim=2, max_res=6.0, epochs=40, batch_size=16, held_out=0.2,
               plateau_gain=0.05, plateau_steps=0)
    whole = Trainer(particles, gmm, TrainConfig(**cfg), str(tmp_path / "whole"),
                    log=lambda m: None)
    z_whole, _ = whole.run()
    killed = Trainer(particles, gmm, TrainConfig(**cfg), str(tmp_path / "cut"),
                     log=lambda m: None)
    images = killed.prepare_images()
    killed.train(images, killed.prepare_features(images), epochs=3)    # then killed
    torch.manual_seed(123)
    resumed = Trainer(particles, gmm, TrainConfig(**cfg), str(tmp_path / "cut"),
                      log=lambda m: None)
    resumed.load_checkpoint(same_run=True)
    z_resumed, _ = resumed.run()
    assert resumed.epoch == whole.epoch < 40
    assert np.abs(z_resumed - z_whole).max() < 1e-5
    again = Trainer(particles, gmm, TrainConfig(**cfg), str(tmp_path / "cut"),
                    log=lambda m: None)
    again.load_checkpoint(same_run=True)
    again.run()                                    # a finished run trains no more
    assert again.epoch == whole.epoch
