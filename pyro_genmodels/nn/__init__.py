"""Networks that parameterize distributions.

Dense: :class:`MLP`, :class:`Split`. Convolutional: :class:`ConvEncoder`,
:class:`ConvDecoder` (flat ``(*, C*H*W)`` interface).
"""

from pyro_genmodels.nn.autoregressive import FVSBN, MADE, NADE, RNN, Conditioner, PixelCNN
from pyro_genmodels.nn.conv import ConvDecoder, ConvEncoder
from pyro_genmodels.nn.dense import MLP, Split
from pyro_genmodels.nn.energy import EnergyMLP

__all__ = ["MLP", "ConvDecoder", "ConvEncoder", "Split"]
__all__ += ["FVSBN", "MADE", "NADE", "RNN", "Conditioner", "PixelCNN"]
__all__ += ["EnergyMLP"]
