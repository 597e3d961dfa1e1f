"""``python -m pyro_genmodels``: see :mod:`pyro_genmodels.cli`."""

from pyro_genmodels.cli import main

if __name__ == "__main__":
    main()
