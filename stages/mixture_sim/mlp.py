"""A torch MLP regressor with the scikit-learn estimator interface.

Why sklearn-shaped: it then sits in the same ``Pipeline`` (log features, scaling) and the same
``cross_validate`` as ridge, random forest and gradient boosting, so the four are compared on
identical folds with identical preprocessing. Full-batch Adam: simulator tables are small
(thousands of rows at most), and full batches make the fit a deterministic function of the seed.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

from harness.runtime import torch_threads


class TorchMLPRegressor(RegressorMixin, BaseEstimator):
    """SiLU MLP, multi-output, trained full-batch with Adam and cosine LR decay on MSE."""

    def __init__(self, hidden: tuple[int, ...] = (64, 64), lr: float = 1e-2, epochs: int = 500,
                 weight_decay: float = 1e-4, seed: int = 0):
        self.hidden = hidden
        self.lr = lr
        self.epochs = epochs
        self.weight_decay = weight_decay
        self.seed = seed

    def _network(self, n_in: int, n_out: int):
        import torch

        layers: list = []
        width = n_in
        for h in self.hidden:
            layers += [torch.nn.Linear(width, h), torch.nn.SiLU()]
            width = h
        layers.append(torch.nn.Linear(width, n_out))
        return torch.nn.Sequential(*layers).double()

    def fit(self, X, y):
        import torch

        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        self._one_d = y.ndim == 1
        y2 = y.reshape(len(y), -1)
        self.n_features_in_ = X.shape[1]
        with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
            torch.manual_seed(self.seed)
            net = self._network(X.shape[1], y2.shape[1])
        xt, yt = torch.from_numpy(X), torch.from_numpy(y2)
        opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs)
        with torch_threads(1):
            for _ in range(self.epochs):
                opt.zero_grad(set_to_none=True)
                loss = torch.nn.functional.mse_loss(net(xt), yt)
                loss.backward()
                opt.step()
                sched.step()
        self.net_ = net.eval()
        self.train_loss_ = float(loss.detach())
        return self

    def predict(self, X):
        import torch

        with torch.no_grad(), torch_threads(1):
            out = self.net_(torch.from_numpy(np.asarray(X, dtype=np.float64))).numpy()
        return out[:, 0] if self._one_d else out
