"""mmcore-weak-boost: an example third-party plugin for mmcore (a valuator and a balancer)."""
__version__ = "0.1.0"
