"""Learning-rate schedule of the heterogeneity training, and when it stops.

A fixed number of epochs with a cosine decay over all of them ends wherever
the count says: on a large set it stops while the latents still improve, on a
small one it spends epochs after they stopped; and whether the networks find a
weak motion before the rate has decayed depends on the run. ``PlateauSchedule``
instead watches a score on held-out particles (never used for a gradient step,
so it measures what the networks learnt, not what they memorised):

1. linear warm-up of the learning rate (``warmup`` epochs);
2. constant rate while the held-out score improves;
3. when no epoch has beaten the best score by ``flat_gain`` of its gain over
   the neutral model (the same particles' score before training) for
   ``patience`` epochs and at least ``patience_steps`` optimiser steps, the
   rate is halved and the count starts again (on a small set two epochs are
   few steps, too few for the networks to leave a stall before the weak
   motion is found, so the step count sets the patience there): a
   stalled score often rises again at a lower rate, when the networks find a
   motion that the noise of larger steps hid;
4. after ``reductions`` halvings, the next such plateau stops the training.

``cap`` (the user's number of epochs) bounds the whole; over its last
``cooldown`` fraction the rate decays to FLOOR along a cosine, so a run that
reaches the cap still ends with small steps (latents that settle instead of
the noise of the full rate). Without held-out
particles (``CosineSchedule``) the rate decays over exactly ``epochs`` epochs,
as it always did. Both keep their state in a dict that goes into the
checkpoint, so a resumed run ends where an uninterrupted one would.
"""
import math

FLOOR = 0.02        # the lowest rate, as a fraction of the peak


def _cosine(x):
    """1 → FLOOR as x goes 0 → 1."""
    x = min(1.0, max(0.0, x))
    return FLOOR + (1 - FLOOR) * 0.5 * (1 + math.cos(math.pi * x))


class CosineSchedule:
    """Warm-up, then a cosine decay over ``epochs`` epochs (no held-out score)."""

    def __init__(self, peak, epochs, warmup=1.0):
        self.peak, self.epochs, self.warmup = peak, epochs, warmup
        self.state = {"kind": "cosine"}

    def rate(self, step, steps_per_epoch):
        """Learning rate at optimiser step ``step`` (counted from the run's start)."""
        warm = self.warmup * steps_per_epoch
        if step < warm:
            return self.peak * (step + 1) / warm
        total = self.epochs * steps_per_epoch
        return self.peak * _cosine((step - warm) / max(total - warm, 1))

    def end_epoch(self, epoch, held_out_score=None):
        """(stop now?, why) after ``epoch`` epochs."""
        if epoch >= self.epochs:
            return True, "the %d epochs asked for are done" % self.epochs
        return False, ""

    def load(self, state):
        pass

    def finished(self, epoch):
        return epoch >= self.epochs


class PlateauSchedule:
    """Warm-up, then the rate halves at each plateau of the held-out score;
    the plateau after the last halving (or the cap) stops the training."""

    def __init__(self, peak, cap, baseline, warmup=1.0, flat_gain=0.01, patience=2,
                 reductions=3, factor=0.5, patience_steps=0, steps_per_epoch=1,
                 cooldown=0.25):
        self.peak, self.cap, self.warmup, self.cooldown = peak, cap, warmup, cooldown
        self.flat_gain = flat_gain
        self.patience = max(patience, math.ceil(patience_steps / max(steps_per_epoch, 1)))
        self.reductions, self.factor = reductions, factor
        self.state = {"kind": "plateau", "baseline": float(baseline), "scores": [],
                      "best": None, "flat": 0, "level": 0, "stopped": False}

    def load(self, state):
        """The state of a checkpoint of this same run."""
        if state and state.get("kind") == "plateau" and "level" in state:
            self.state = dict(state)

    def finished(self, epoch):
        """A run that already stopped (resumed after its end) trains no more."""
        return epoch >= self.cap or self.state["stopped"]

    def restart(self, epoch):
        """A continued run: the full rate again from ``epoch`` (its scores kept)."""
        self.state.update(flat=0, best=None, level=0, stopped=False, restart=epoch)

    def rate(self, step, steps_per_epoch):
        s = self.state
        warm = self.warmup * steps_per_epoch
        since = step - s.get("restart", 0) * steps_per_epoch
        if since < warm:
            return self.peak * (since + 1) / warm
        rate = self.peak * self.factor ** s["level"]
        start = self.cap * (1 - self.cooldown)
        if self.cooldown > 0 and step >= start * steps_per_epoch:
            rate *= _cosine((step / steps_per_epoch - start) / (self.cap - start))
        return rate

    def end_epoch(self, epoch, held_out_score):
        """Record the held-out score after ``epoch`` epochs: (stop now?, a line
        for the log or "")."""
        s = self.state
        score = float(held_out_score)
        s["scores"].append(score)
        margin = self.flat_gain * max(score - s["baseline"], 0.0)
        if s["best"] is None or score > s["best"] + margin:
            s["best"], s["flat"] = score, 0
        else:
            s["flat"] += 1
        if s["flat"] >= self.patience:
            if s["level"] >= self.reductions:
                s["stopped"] = True
                return True, ("the held-out score improved by less than %g of its gain for "
                              "%d epochs at the lowest learning rate (%g)"
                              % (self.flat_gain, s["flat"], self.peak * self.factor ** s["level"]))
            s["level"] += 1
            s["flat"] = 0
            note = ("the held-out score levelled off: learning rate lowered to %g"
                    % (self.peak * self.factor ** s["level"]))
        else:
            note = ""
        if epoch >= self.cap:
            s["stopped"] = True
            return True, ("the cap of %d epochs (the held-out score had not levelled off at "
                          "the lowest learning rate; more epochs may help)" % self.cap)
        return False, note
