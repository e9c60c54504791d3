"""Learning-rate schedule of the heterogeneity training, and when it stops.

A fixed number of epochs with a cosine decay over all of them ends wherever
the count says: on a large set it stops while the latents still improve, on a
small one it spends epochs after they stopped. ``PlateauSchedule`` instead
watches a score on held-out particles (never used for a gradient step, so it
measures what the networks learnt, not what they memorised):

1. linear warm-up of the learning rate (``warmup`` epochs);
2. constant rate while the held-out score still rises;
3. once it rises by less than ``flat_gain`` of its total gain (over the
   neutral model's score on the same particles) for ``patience`` epochs in a
   row, a cosine cool-down over a quarter of the epochs run so far (at least
   one), which settles the latent layout, then stop.

``cap`` (the user's number of epochs) bounds the whole: the cool-down starts
early enough to end at the cap. Without held-out particles
(``CosineSchedule``) the rate decays over exactly ``epochs`` epochs, as it
always did. Both keep their state in a dict that goes into the checkpoint, so
a resumed run ends where an uninterrupted one would.
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
    """Warm-up, constant rate until the held-out score plateaus, cool-down, stop."""

    def __init__(self, peak, cap, baseline, warmup=1.0, flat_gain=0.01, patience=2,
                 cooldown=0.25):
        self.peak, self.cap, self.warmup = peak, cap, warmup
        self.flat_gain, self.patience, self.cooldown = flat_gain, patience, cooldown
        self.state = {"kind": "plateau", "baseline": float(baseline), "scores": [],
                      "flat": 0, "cool_start": None, "cool_end": None, "why": ""}

    def load(self, state):
        """The state of a checkpoint of this same run."""
        if state and state.get("kind") == "plateau":
            self.state = dict(state)

    def finished(self, epoch):
        """A run that already stopped (resumed after its end) trains no more."""
        end = self.state["cool_end"]
        return epoch >= self.cap or (end is not None and epoch >= end)

    def restart(self, epoch):
        """A continued run: a new constant phase from ``epoch`` (its scores kept)."""
        self.state.update(flat=0, cool_start=None, cool_end=None, why="")
        self.state["restart"] = epoch

    def _cool_length(self, epoch):
        return max(1, int(math.ceil(self.cooldown * epoch)))

    def rate(self, step, steps_per_epoch):
        s = self.state
        warm = self.warmup * steps_per_epoch
        since = step - s.get("restart", 0) * steps_per_epoch
        if since < warm:
            return self.peak * (since + 1) / warm
        epoch_position = step / steps_per_epoch
        if s["cool_start"] is None:
            return self.peak
        span = s["cool_end"] - s["cool_start"]
        return self.peak * _cosine((epoch_position - s["cool_start"]) / span)

    def _start_cooling(self, epoch, why):
        s = self.state
        length = min(self._cool_length(epoch), self.cap - epoch)
        s["cool_start"], s["cool_end"], s["why"] = epoch, epoch + length, why

    def end_epoch(self, epoch, held_out_score):
        """Record the held-out score after ``epoch`` epochs; (stop now?, why)."""
        s = self.state
        s["scores"].append(float(held_out_score))
        if s["cool_start"] is not None:
            if epoch >= s["cool_end"]:
                return True, s["why"]
            return False, ""
        if epoch >= self.cap:
            return True, "the cap of %d epochs is reached" % self.cap
        scores = s["scores"]
        if len(scores) >= 2:
            gain = scores[-1] - scores[-2]
            total = scores[-1] - s["baseline"]
            s["flat"] = s["flat"] + 1 if gain < self.flat_gain * max(total, 0.0) else 0
        if s["flat"] >= self.patience:
            self._start_cooling(epoch, "the held-out score rose by less than %g of its gain "
                                "for %d epochs (plateau at epoch %d); then a cool-down"
                                % (self.flat_gain, self.patience, epoch))
        elif epoch + self._cool_length(epoch) >= self.cap:
            self._start_cooling(epoch, "the cap of %d epochs (the held-out score was still "
                                "rising; more epochs may help)" % self.cap)
        if s["cool_start"] is not None and epoch >= s["cool_end"]:
            return True, s["why"]
        return False, ""
