"""CapturedStep's bookkeeping, on the CPU: which call runs the step launch by launch, which records it, which
replays a recording, and what a failed recording does. The recording itself (CUDA stream capture) is stood in
for here; tests/test_gpu.py records and replays the real step and compares it with the plain one bit for bit."""
import numpy as np
import pytest

from scratchvae.run import step as graph


class Model:
    """A stand-in for the VAE: says which calls it gets; its noise comes from a seeded generator."""
    device = "gpu"
    mixed = False                           # (no float16 layers: every step updates)

    def __init__(self):
        self.calls, self.rng = [], np.random.default_rng(0)

    def sample_eps(self, n):
        eps = self.rng.standard_normal((n, 2))
        self.calls.append(("eps", n))
        return eps

    def loss(self, x, eps):
        self.calls.append(("loss", x.shape[0], float(eps[0, 0])))
        return {"loss": np.array(1.0)}

    def backward(self):
        self.calls.append(("backward",))

    @property
    def grads(self):
        return {}


class Opt:
    def __init__(self, calls):
        self.calls = calls

    def step(self, grads):
        self.calls.append(("adam",))


class Recorded:
    """A stand-in for graph.Recording: remembers what it was made from and counts its replays."""
    made, fail = [], False

    def __init__(self, model, opt, x, eps):
        if Recorded.fail:
            raise RuntimeError("operation not permitted when stream is capturing")
        self.shape, self.replays = x.shape, []
        Recorded.made.append(self)

    def replay(self, x, eps, opt):
        self.replays.append(float(eps[0, 0]))
        return {"loss": np.array(2.0)}


@pytest.fixture
def recorded(monkeypatch):
    Recorded.made, Recorded.fail = [], False
    monkeypatch.setattr(graph, "Recording", Recorded)
    return Recorded


def test_the_first_step_of_a_shape_runs_then_records_later_ones_replay(recorded):
    model = Model()
    step = graph.CapturedStep(model, Opt(model.calls))
    a, b = np.zeros((4, 3, 8, 8)), np.zeros((3, 3, 8, 8))         # a batch of 4, an epoch's last batch of 3
    outs = [step(x) for x in (a, a, a, b, b, a)]
    assert [o["loss"].item() for o in outs] == [1.0, 2.0, 2.0, 1.0, 2.0, 2.0]   # run, replay, replay, run, …
    assert [r.shape for r in recorded.made] == [a.shape, b.shape]      # one recording per shape, kept
    assert len(recorded.made[0].replays) == 3 and len(recorded.made[1].replays) == 1
    # the noise is drawn once per step, in order, from the model's generator, whichever way the step runs
    eps = np.random.default_rng(0)
    draws = [eps.standard_normal((n, 2))[0, 0] for n in (4, 4, 4, 3, 3, 4)]
    ran = [c[2] for c in model.calls if c[0] == "loss"]
    replayed = recorded.made[0].replays + recorded.made[1].replays
    assert sorted(ran + replayed) == sorted(draws)
    assert ran == [draws[0], draws[3]] and recorded.made[0].replays == [draws[1], draws[2], draws[5]]
    assert model.calls.count(("adam",)) == 2                          # only the steps run launch by launch


def test_a_step_that_cannot_be_recorded_runs_launch_by_launch_after_one_warning(recorded):
    recorded.fail = True
    model = Model()
    step = graph.CapturedStep(model, Opt(model.calls))
    x = np.zeros((4, 3, 8, 8))
    with pytest.warns(UserWarning, match=r"could not be recorded as a CUDA graph \(RuntimeError: operation not "
                                         r"permitted when stream is capturing\); running it launch by launch"):
        step(x)
    recorded.fail = False                                             # not tried again
    outs = [step(x) for _ in range(3)]
    assert [o["loss"].item() for o in outs] == [1.0, 1.0, 1.0] and recorded.made == []
    assert step.graph is None and model.calls.count(("adam",)) == 4


def test_only_a_gpu_model_is_recorded():
    model = Model()
    model.device = "cpu"
    with pytest.raises(ValueError, match="CapturedStep records a GPU step; the model is on the CPU"):
        graph.CapturedStep(model, Opt([]))


def test_step_for_picks_the_step_of_the_run_and_an_empty_shard_adds_nothing():
    """One process on the CPU steps plainly; a job of several ranks shards its batches. A rank whose shard of a
    batch is empty (fewer images than ranks) adds zero gradients to the sum and zero loss terms, and still
    takes Adam's step with the others."""
    from scratchvae import VAE
    from scratchvae.model.optim import Adam
    from scratchvae.run.distributed import World

    class TwoRanks(World):
        def __init__(self):
            super().__init__()
            self.rank, self.size, self.summed = 1, 2, []

        def allreduce(self, a, what="the gradients' sum"):
            self.summed.append(a.copy())
            return a
    model = VAE(input_shape=(3, 16, 16), latent_dim=2, encoder=((2, 4, 2),) * 2, decoder=((2, 4, 2), (None, 4, 2)),
                dense_size=4, seed=1)
    opt = Adam(model.params)
    assert type(graph.step_for(model, opt, World())).__name__ == "PlainStep"
    world = TwoRanks()
    step = graph.step_for(model, opt, world)
    assert type(step).__name__ == "ShardedStep"
    model.flat_grads[...] = 1.0                                       # what a last step left
    terms = step(None, size=1)                                        # batch of 1: rank 1's shard is empty
    assert all(float(v) == 0.0 for v in terms.values()) and not world.summed[0].any() and opt.t == 1


from scratchvae.model.losses import LOSS_KEYS  # noqa: E402


class ShardedRecorded:
    """A stand-in for graph.ShardedRecording: what it was made from, and its replays' noise and sums."""
    made, fail = [], False

    def __init__(self, model, opt, x, eps, share):
        if ShardedRecorded.fail:
            raise RuntimeError("operation not permitted when stream is capturing")
        self.shape, self.share, self.replays = None if x is None else x.shape, share, []
        ShardedRecorded.made.append(self)

    def replay(self, x, eps, opt, world):
        self.replays.append(None if x is None else float(eps[0, 0]))
        world.allreduce(np.zeros(1))                                # the sum between the two graphs
        return {"loss": np.array(3.0)}


class ShardModel(Model):
    """The stand-in VAE, with the gradient buffer a sharded step weights and sums."""
    mixed = False
    xp = np                                 # (an empty shard's zero loss terms)

    def __init__(self):
        super().__init__()
        self.flat_grads = np.ones(3)

    def zero_grads(self):
        self.calls.append(("zero",))
        self.flat_grads[...] = 0

    def loss(self, x, eps):
        super().loss(x, eps)
        return {k: np.array(1.0) for k in LOSS_KEYS}


class Ranks:
    """Rank `rank` of `size`; counts the sums it is asked for."""

    def __init__(self, rank, size):
        self.rank, self.size, self.sums = rank, size, 0

    def allreduce(self, a, what="the gradients' sum"):
        self.sums += 1
        return a


@pytest.fixture
def sharded(monkeypatch):
    ShardedRecorded.made, ShardedRecorded.fail = [], False
    monkeypatch.setattr(graph, "ShardedRecording", ShardedRecorded)
    return ShardedRecorded


def test_several_ranks_record_two_graphs_per_shape_around_the_sum(sharded):
    model, world = ShardModel(), Ranks(0, 2)
    step = graph.CapturedShardedStep(model, Opt(model.calls), world)
    a, b = np.zeros((2, 3, 8, 8)), np.zeros((1, 3, 8, 8))            # rank 0's shards of batches of 4 and 3
    outs = [step(a, size=4), step(a, size=4), step(b, size=3), step(a, size=4), step(None, size=1),
            step(None, size=1), step(b, size=3)]
    assert [o["loss"].item() for o in outs] == [0.5, 3.0, 1 / 3, 3.0, 0.0, 3.0, 3.0]   # run (×share), replay, …
    assert [(r.shape, r.share) for r in sharded.made] == [(a.shape, 0.5), (b.shape, 1 / 3), (None, 0.0)]
    assert world.sums == len(outs)                                     # every step sums, run or replayed
    assert model.calls.count(("adam",)) == 3 and model.calls.count(("zero",)) == 1   # the runs alone
    # the whole batch's noise drawn once per step, in order; each step takes this rank's rows of it
    eps = np.random.default_rng(0)
    draws = [eps.standard_normal((n, 2)) for n in (4, 4, 3, 4, 1, 1, 3)]
    ran = [c[2] for c in model.calls if c[0] == "loss"]
    assert ran == [draws[0][0, 0], draws[2][0, 0]]                    # rank 0 of 2: rows 0, 1 of 4; row 0 of 3
    assert sharded.made[0].replays == [draws[1][0, 0], draws[3][0, 0]]
    assert sharded.made[1].replays == [draws[6][0, 0]] and sharded.made[2].replays == [None]   # (none of 1)


def test_a_sharded_step_that_cannot_be_recorded_runs_as_shardedstep_after_one_warning(sharded):
    sharded.fail = True
    model, world = ShardModel(), Ranks(0, 2)
    step = graph.CapturedShardedStep(model, Opt(model.calls), world)
    x = np.zeros((2, 3, 8, 8))
    with pytest.warns(UserWarning, match=r"could not be recorded as CUDA graphs \(RuntimeError: operation not "
                                         r"permitted when stream is capturing\); running it launch by launch"):
        step(x, size=4)
    sharded.fail = False
    assert [step(x, size=4)["loss"].item() for _ in range(2)] == [0.5, 0.5] and sharded.made == []
    assert model.calls.count(("adam",)) == 3 and world.sums == 3


def test_step_for_records_several_ranks_on_a_gpu_unless_told_not_to():
    model, world = ShardModel(), Ranks(0, 2)
    assert type(graph.step_for(model, Opt([]), world)).__name__ == "CapturedShardedStep"
    assert type(graph.step_for(model, Opt([]), world, graph=False)).__name__ == "ShardedStep"
    model.mixed = True                                                  # (its step reads back whether to update)
    assert type(graph.step_for(model, Opt([]), world)).__name__ == "ShardedStep"
    model.device = "cpu"
    with pytest.raises(ValueError, match="CapturedShardedStep records a GPU step; the model is on the CPU"):
        graph.CapturedShardedStep(model, Opt([]), world)
