"""Optimisers over dicts of arrays.

Every optimiser has ``update(params, grads) -> None``: it **modifies the
arrays in ``params`` in place** (so a model's parameter dict, or an algorithm's
target dict, is updated where it lives). ``grads`` must have exactly the keys
of ``params``; per-key state (velocity, moments) is created on first use.
Formulas follow PyTorch's ``torch.optim`` (without weight decay unless given),
so a cross-check needs no conversion.

Every hyperparameter is checked when the optimiser is built (a real number,
finite, in range; see :mod:`refnets.validation`). ``hyperparameters()`` and
``state_dict()`` / ``load_state_dict()`` expose everything an optimiser holds,
so :func:`refnets.checkpoint.save_checkpoint` can store it and a resumed run
continues bit for bit.
"""

from __future__ import annotations

import copy

import numpy as np

from .validation import check_bool, check_choice, check_input, check_number, trusted

__all__ = ["Optimizer", "SGD", "Momentum", "RMSprop", "Adam", "LeeRMSprop", "get_optimizer",
           "optimizer_class"]


class Optimizer:
    """Base class: checks keys/shapes, keeps per-key state in ``self.state``."""

    #: constructor arguments besides lr and weight_decay (for hyperparameters())
    _hyper = ()

    def __init__(self, lr, weight_decay=0.0):
        where = type(self).__name__
        self.lr = check_number(lr, "lr", where, low=0, low_open=True)
        self.weight_decay = check_number(weight_decay, "weight_decay", where, low=0)
        self.state = {}
        self.t = 0

    def hyperparameters(self):
        """The constructor arguments, ``type(self)(**opt.hyperparameters())`` rebuilds it."""
        return {"lr": self.lr, "weight_decay": self.weight_decay,
                **{name: getattr(self, name) for name in self._hyper}}

    def state_dict(self):
        """Copy of everything the optimiser accumulated: ``{"t": int, "state": {key: ...}}``."""
        return {"t": self.t, "state": copy.deepcopy(self.state)}

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` returned (copied; nothing is shared)."""
        where = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state, dict) or set(state) != {"t", "state"}:
            raise ValueError(f"{where}: state must be a dict with keys 't' and 'state' "
                             f"(from state_dict()), got {state!r:.80}")
        self.t = int(check_number(state["t"], "state['t']", where, low=0, integer=True))
        if not isinstance(state["state"], dict):
            raise ValueError(f"{where}: state['state'] must be a dict, got "
                             f"{type(state['state']).__name__}")
        self.state = copy.deepcopy(state["state"])

    def update(self, params, grads):
        """Apply one step in place: params[k] <- params[k] - step(grads[k])."""
        if set(params) != set(grads):
            raise ValueError(f"{type(self).__name__}.update: grads keys {sorted(grads)} must equal "
                             f"params keys {sorted(params)}")
        # Validate every key before touching any array, so a bad call changes nothing.
        for key, p in params.items():
            if not isinstance(p, np.ndarray) or not p.flags.writeable:
                raise ValueError(f"{type(self).__name__}.update: params[{key!r}] must be a "
                                 f"writeable ndarray (updated in place)")
            if np.shape(grads[key]) != p.shape:
                raise ValueError(f"{type(self).__name__}.update: grads[{key!r}] must have shape "
                                 f"{p.shape}, got {np.shape(grads[key])}")
        # float64 (float32 and ints upcast exactly); a NaN in grads is the run's, not
        # bad data: it is not scanned for here (train checks the variables each epoch)
        with trusted():
            grads = {key: check_input(grads[key], f"grads[{key!r}]",
                                      f"{type(self).__name__}.update", allow_empty=True)
                     for key in params}
        self.t += 1
        for key, p in params.items():
            g = grads[key]
            if self.weight_decay:
                g = g + self.weight_decay * p
            p -= self._step(key, g)

    def _step(self, key, g):  # pragma: no cover - interface
        raise NotImplementedError

    def _slot(self, key, fresh):
        """The per-key state, created by ``fresh()`` on first use (not allocated every step)."""
        st = self.state.get(key)
        if st is None:
            st = self.state[key] = fresh()
        return st

    def __repr__(self):
        return f"{type(self).__name__}(lr={self.lr})"


class SGD(Optimizer):
    """p <- p - lr * g."""

    def _step(self, key, g):
        return self.lr * g


class Momentum(Optimizer):
    """Heavy-ball momentum (PyTorch form), optionally Nesterov.

    v <- mu v + g;   step = lr * v        (plain)
    v <- mu v + g;   step = lr * (g + mu v)   (Nesterov)
    """

    _hyper = ("momentum", "nesterov")

    def __init__(self, lr, momentum=0.9, nesterov=False, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.momentum = check_number(momentum, "momentum", "Momentum", low=0, high=1,
                                     high_open=True)
        self.nesterov = check_bool(nesterov, "nesterov", "Momentum")

    def _step(self, key, g):
        v = self.state.get(key)
        v = g.copy() if v is None else self.momentum * v + g
        self.state[key] = v
        return self.lr * (g + self.momentum * v if self.nesterov else v)


class RMSprop(Optimizer):
    """RMSprop (PyTorch form): s <- a s + (1-a) g^2; step = lr g / (sqrt(s) + eps).

    ``centered=True`` subtracts the squared running mean of g from s.
    """

    _hyper = ("alpha", "eps", "centered")

    def __init__(self, lr=1e-2, alpha=0.99, eps=1e-8, centered=False, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.alpha = check_number(alpha, "alpha", "RMSprop", low=0, high=1, high_open=True)
        self.eps = check_number(eps, "eps", "RMSprop", low=0, low_open=True)
        self.centered = check_bool(centered, "centered", "RMSprop")

    def _step(self, key, g):
        st = self._slot(key, lambda: {"s": np.zeros_like(g), "m": np.zeros_like(g)})
        st["s"] = self.alpha * st["s"] + (1 - self.alpha) * g * g
        denom = st["s"]
        if self.centered:
            st["m"] = self.alpha * st["m"] + (1 - self.alpha) * g
            denom = denom - st["m"] ** 2
        return self.lr * g / (np.sqrt(denom) + self.eps)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015, Algorithm 1; PyTorch's eps placement).

    m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2;
    step = lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
    """

    _hyper = ("beta1", "beta2", "eps")

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.beta1 = check_number(beta1, "beta1", "Adam", low=0, high=1, high_open=True)
        self.beta2 = check_number(beta2, "beta2", "Adam", low=0, high=1, high_open=True)
        self.eps = check_number(eps, "eps", "Adam", low=0, low_open=True)

    def _step(self, key, g):
        st = self._slot(key, lambda: {"m": np.zeros_like(g), "v": np.zeros_like(g), "t": 0})
        st["t"] += 1
        st["m"] = self.beta1 * st["m"] + (1 - self.beta1) * g
        st["v"] = self.beta2 * st["v"] + (1 - self.beta2) * g * g
        m_hat = st["m"] / (1 - self.beta1 ** st["t"])
        v_hat = st["v"] / (1 - self.beta2 ** st["t"])
        return self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class LeeRMSprop(Optimizer):
    """Centered RMSprop with momentum as in Lee et al.'s DTP code (``util.rms_prop``).

    Per key, with decay a (``averaging_coeff``), momentum mu and stabiliser c::

        m   <- a m + (1-a) g                 running mean of g
        v   <- a v + (1-a) g^2               running mean of g^2
        inc <- mu inc - lr g / sqrt(v - m^2 + c)
        p   <- p + inc

    The stabiliser c = 1e-3 sits **inside** the square root, so for gradients
    much smaller than sqrt(c) ~ 0.03 (DTP's local-loss gradients) this is
    momentum SGD with learning rate lr / sqrt(c) ~ 31.6 lr; it is not PyTorch's
    ``RMSprop(centered=True, momentum=0.9)``, whose eps is outside the root and
    tiny. Used to reproduce Lee et al. (2015); see ``docs`` of
    :mod:`refnets.algorithms.target_propagation.algorithm`.

    Parameters
    ----------
    lr : float
    momentum : float in [0, 1), default 0.9
    averaging_coeff : float in [0, 1), default 0.95
    stabilizer : float > 0, default 1e-3
    """

    _hyper = ("momentum", "averaging_coeff", "stabilizer")

    def __init__(self, lr, momentum=0.9, averaging_coeff=0.95, stabilizer=1e-3, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        where = "LeeRMSprop"
        self.momentum = check_number(momentum, "momentum", where, low=0, high=1, high_open=True)
        self.averaging_coeff = check_number(averaging_coeff, "averaging_coeff", where, low=0,
                                            high=1, high_open=True)
        self.stabilizer = check_number(stabilizer, "stabilizer", where, low=0, low_open=True)

    def _step(self, key, g):
        st = self._slot(key, lambda: {"m": np.zeros_like(g), "v": np.zeros_like(g),
                                    "inc": np.zeros_like(g)})
        a = self.averaging_coeff
        st["m"] = a * st["m"] + (1 - a) * g
        st["v"] = a * st["v"] + (1 - a) * g * g
        st["inc"] = self.momentum * st["inc"] - self.lr * g / np.sqrt(
            st["v"] - st["m"] ** 2 + self.stabilizer)
        return -st["inc"]   # the base class subtracts the step: p <- p + inc


_OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "rmsprop": RMSprop, "adam": Adam,
               "lee_rmsprop": LeeRMSprop}


def get_optimizer(name, **kwargs):
    """Build an optimiser from its name ('sgd', 'momentum', 'rmsprop', 'adam', 'lee_rmsprop')."""
    check_choice(name, "optimizer", sorted(_OPTIMIZERS), "get_optimizer")
    return _OPTIMIZERS[name](**kwargs)


def optimizer_class(name):
    """The optimiser class called ``name`` (its class name, e.g. ``"Adam"``)."""
    classes = {cls.__name__: cls for cls in _OPTIMIZERS.values()}
    check_choice(name, "name", sorted(classes), "optimizer_class")
    return classes[name]
