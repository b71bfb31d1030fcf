"""Chapter 5's grid of models, one Adam step at a time, against the same P models stacked under ``vmap``.

The question this answers: would training the equilibrium surface's grid as one batch (``torch.func``:
``stack_module_state`` + ``functional_call`` + ``vmap``, one Adam over the stacked tensors, which is
elementwise and so exactly per-model Adam) buy time for equilibration? Each side takes the same number of
updates of R + lambda D + gamma C (Eq. 8 of the free-energy paper, ``hamiltonian_loss``) for P models of the
MNIST architecture of Appendix A (784-256-16 encoder and decoder, 12-unit classifier), each at its own
(lambda, gamma), on the same mini-batch and latent noise. The two sides alternate; every ratio is
measured side by side in this one run. One torch thread unless --threads says otherwise.

    python benchmarks/free_energy_grid.py                    # CPU, P = 1, 3, 9
    python benchmarks/free_energy_grid.py --device cuda --models 9 63

Measured on the 2-core machine (one thread, 40 updates x 2 repeats, best of each): 0.72x at P = 1, 0.77x at
P = 3, 0.94x at P = 9 (5.96 against 6.33 ms per model-step). The step is compute-bound, so stacking buys
nothing on a CPU: chapter 5's CPU grid is trained one model at a time, and the batch is left to a GPU run
of the paper-scale grid (63 models), not measured here.
"""
from __future__ import annotations

import argparse
import copy
import platform
import time

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ctd_lib._util.checks import check_device
from ctd_lib.free_energy.functionals import _kl_to_marginal, _sample_z, classification, distortion, hamiltonian_loss
from ctd_lib.free_energy.model import FreeEnergyModel, make_free_energy_model


class _Objective(nn.Module):
    """R + lam D + gamma C of one model on a batch with given latent noise (what ``hamiltonian_loss`` computes)."""

    def __init__(self, model: FreeEnergyModel):
        super().__init__()
        self.m = model

    def forward(self, x, y, eps, lam, gamma):
        mu, logvar = self.m.encode(x)
        z = _sample_z(mu, logvar, eps)
        return (_kl_to_marginal(self.m, mu, logvar).mean() + lam * distortion(self.m, x, z).mean()
                + gamma * classification(self.m, z, y).mean())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def one_at_a_time(models, x, y, lams, gammas, steps: int, device) -> float:
    """Seconds per model-step, each model stepped alone with its own Adam."""
    opts = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in models]
    gen = torch.Generator().manual_seed(0)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        for m, opt, lam, gam in zip(models, opts, lams.tolist(), gammas.tolist()):
            r, d, c = hamiltonian_loss(m, x, y, lam, gam, generator=gen)
            opt.zero_grad(set_to_none=True)
            (r + lam * d + gam * c).backward()
            opt.step()
    _sync(device)
    return (time.perf_counter() - t0) / (steps * len(models))


def stacked(models, x, y, lams, gammas, steps: int, device) -> float:
    """Seconds per model-step, all models in one vmapped step with one Adam over the stacked weights."""
    params, buffers = stack_module_state(models)
    objective = _Objective(copy.deepcopy(models[0]))

    def loss(p, b, x, y, eps, lam, gam):
        return functional_call(objective, ({f"m.{k}": v for k, v in p.items()}, {f"m.{k}": v for k, v in b.items()}),
                               (x, y, eps, lam, gam))

    batched = vmap(loss, in_dims=(0, 0, None, None, None, 0, 0))
    opt = torch.optim.Adam(list(params.values()), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    latent = models[0].config.latent
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        eps = torch.randn((1, x.shape[0], latent), generator=gen).to(device)
        opt.zero_grad(set_to_none=True)
        batched(params, buffers, x, y, eps, lams, gammas).sum().backward()
        opt.step()
    _sync(device)
    return (time.perf_counter() - t0) / (steps * len(models))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", type=int, nargs="+", default=[1, 3, 9], help="P, models in the grid")
    ap.add_argument("--steps", type=int, default=40, help="updates per side per repeat")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    for name in ("steps", "repeats", "batch_size", "threads"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')}={getattr(args, name)} is not valid; it must be >= 1")
    if any(p < 1 for p in args.models):
        ap.error(f"--models={args.models} is not valid; every P must be >= 1")
    device = torch.device(check_device("--device", args.device))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(args.batch_size, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device {device} ({dev_name}), torch {torch.__version__}, {args.threads} thread(s), batch "
          f"{args.batch_size}, {args.steps} updates x {args.repeats} repeats per side")
    print(f"{'P':>4} {'one at a time ms/model-step':>28} {'stacked ms/model-step':>22} {'ratio':>7}")
    for P in args.models:
        models = [make_free_energy_model("mnist", seed=i).to(device) for i in range(P)]
        lams = torch.linspace(0.25, 1.0, P, device=device)
        gammas = torch.linspace(2.0, 8.0, P, device=device)
        seq, bat = [], []
        for _ in range(args.repeats):  # alternate the two sides
            seq.append(one_at_a_time([copy.deepcopy(m) for m in models], x, y, lams, gammas, args.steps, device))
            bat.append(stacked([copy.deepcopy(m) for m in models], x, y, lams, gammas, args.steps, device))
        s, b = min(seq), min(bat)
        print(f"{P:>4} {s * 1e3:>28.3f} {b * 1e3:>22.3f} {s / b:>6.2f}x")


if __name__ == "__main__":
    main()
