"""Autoregressive conditioners: networks giving every ``p(x_d | x_<d, context)`` in one pass.

Each is a :class:`Conditioner` (the protocol used by
:class:`pyro_genmodels.distributions.AutoregressiveDistribution`): FVSBN, NADE,
MADE, PixelCNN and RNN (LSTM/GRU).
"""

from pyro_genmodels.nn.autoregressive.base import Conditioner
from pyro_genmodels.nn.autoregressive.fvsbn import FVSBN
from pyro_genmodels.nn.autoregressive.made import MADE
from pyro_genmodels.nn.autoregressive.nade import NADE
from pyro_genmodels.nn.autoregressive.pixelcnn import MaskedConv2d, PixelCNN
from pyro_genmodels.nn.autoregressive.rnn import RNN

__all__ = ["FVSBN", "MADE", "NADE", "RNN", "Conditioner", "MaskedConv2d", "PixelCNN"]
