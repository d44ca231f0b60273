"""Configuration: schema, loading and rendering."""

from pycrio.config.load import ConfigError, defaults, load
from pycrio.config.schema import Config

__all__ = ["Config", "ConfigError", "defaults", "load"]
