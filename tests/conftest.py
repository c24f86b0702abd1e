import torch

# The test problems are tiny: one BLAS thread is fastest (and avoids oversubscription when
# CVXPY and torch run side by side on CI's two cores).
torch.set_num_threads(1)
