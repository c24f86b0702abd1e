import torch

# Two cores on CI: keep BLAS from oversubscribing when tests run CVXPY and torch side by side.
torch.set_num_threads(2)
